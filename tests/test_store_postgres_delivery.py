"""Several instances delivering from one PostgreSQL: one holder per channel, takeover after
the lease runs out with a look-up before any re-send, and a holder paused past its lease
sends and marks nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
from support import wait_for
from test_delivery import Clock, ScriptedChannel, record

from broadcaster.delivery import ChannelWorker
from broadcaster.model import PostState
from broadcaster.store.postgres import PostgresStore

TTL = timedelta(seconds=0.6)


@pytest.fixture
def stores(postgres_url: str) -> Iterator[tuple[PostgresStore, PostgresStore]]:
    a, b = PostgresStore(postgres_url, pool_size=2), PostgresStore(postgres_url, pool_size=2)
    yield a, b
    a.close()
    b.close()


def worker(
    store: PostgresStore, channel: ScriptedChannel, holder: str, events: list | None = None
) -> ChannelWorker:
    on_lease = (lambda *event: events.append(event)) if events is not None else None
    return ChannelWorker(
        channel, store, clock=Clock(), holder=holder, lease_ttl=TTL, on_lease=on_lease
    )


def test_only_the_holder_delivers_and_the_other_takes_over_when_it_dies(
    stores: tuple[PostgresStore, PostgresStore],
) -> None:
    a_store, b_store = stores
    first = record(a_store, "one")
    a_channel, b_channel = ScriptedChannel(), ScriptedChannel()
    a_events: list[tuple[str, bool, bool]] = []
    b_events: list[tuple[str, bool, bool]] = []
    a = worker(a_store, a_channel, "a", a_events)
    b = worker(b_store, b_channel, "b", b_events)
    assert a.step() == 0 and a_channel.calls == [("publish", first[0])]
    assert a_events == [("c", True, False)]  # held (the metric), not a takeover
    # b cannot deliver while a's lease runs
    second = record(a_store, "two")
    assert b.step() is not None and b_channel.calls == []
    # a dies mid-request: the post is left 'sending'
    assert a_store.mark_sending(second[0], lease=a.lease.current)
    wait_for(lambda: b.step() == 0, "b takes over once a's lease ran out", timeout=5)
    # the new holder looks the post up before any re-send (not found: sent once, by b)
    assert b_channel.calls == [("find", second[0]), ("publish", second[0])]
    assert [p.state for p in b_store.posts()] == [PostState.SENT, PostState.SENT]
    assert b_store.leases()["c"].holder == "b"
    assert b_events == [("c", True, True)]  # counted as a takeover


def test_after_a_takeover_a_post_left_sending_is_looked_up_only_once_its_request_has_ended(
    stores: tuple[PostgresStore, PostgresStore],
) -> None:
    """A holder cut off from the database (not dead) may still be waiting for the platform
    when its lease runs out: looked up at once, its post could be missed and sent twice."""
    a_store, b_store = stores
    (key,) = record(a_store, "one")
    a = worker(a_store, ScriptedChannel(), "a")
    assert a.lease.usable() and a_store.mark_sending(key, lease=a.lease.current)
    b_channel = ScriptedChannel()
    settle = timedelta(seconds=1.5)
    b = ChannelWorker(b_channel, b_store, clock=Clock(), holder="b", lease_ttl=TTL, settle=settle)
    wait_for(lambda: b.lease.usable(), "b takes the lease once a's ran out", timeout=5)
    wait = b.step()
    assert wait is not None and 0 < wait <= settle.total_seconds()
    assert b_channel.calls == [], "nothing looked up while a's request may still be on its way"
    wait_for(lambda: b.step() == 0, "b looks it up once a's request has ended", timeout=5)
    assert b_channel.calls == [("find", key), ("publish", key)]


def test_a_holder_back_after_someone_elses_whole_lease_also_waits_before_its_look_up(
    stores: tuple[PostgresStore, PostgresStore], postgres_url: str
) -> None:
    """b holds the channel idle and is paused; c takes over, sends and is cut off mid-request;
    b wakes after c's lease ran out. b never saw c's lease, but the fencing token jumped:
    c's request may still be on its way, so b waits as any new holder does."""
    b_store, c_store = stores
    settle = timedelta(seconds=1.5)
    b_channel, c_channel = ScriptedChannel(), ScriptedChannel()
    b, c = (
        ChannelWorker(ch, st, clock=Clock(), holder=h, lease_ttl=TTL, settle=settle)
        for ch, st, h in ((b_channel, b_store, "b"), (c_channel, c_store, "c"))
    )
    assert b.step() is None  # b holds the channel, nothing to send
    (key,) = record(b_store, "one")
    wait_for(lambda: c.lease.usable(), "c takes over while b is paused", timeout=5)
    assert c_store.mark_sending(key, lease=c.lease.current)  # c's request is on its way
    with psycopg.connect(postgres_url, autocommit=True) as db:

        def c_lease_ran_out() -> bool:
            row = db.execute("SELECT expires_at < now() FROM leases WHERE channel = 'c'")
            return bool(row.fetchone()[0])  # type: ignore[index]

        wait_for(c_lease_ran_out, "c's lease runs out on the database's clock", timeout=5)
    wait = b.step()  # b wakes: the first thing it sees is its own lease, renewed
    assert wait is not None and wait > 0 and b_channel.calls == []
    wait_for(lambda: b.step() == 0, "b looks it up once c's request has ended", timeout=5)
    assert b_channel.calls == [("find", key), ("publish", key)]


def test_a_holder_paused_past_its_lease_sends_and_marks_nothing(
    stores: tuple[PostgresStore, PostgresStore],
) -> None:
    a_store, b_store = stores
    (key,) = record(a_store, "one")
    a_channel, b_channel = ScriptedChannel(), ScriptedChannel()
    a, b = worker(a_store, a_channel, "a"), worker(b_store, b_channel, "b")
    assert a.lease.usable()
    stale = a.lease.current
    # a is paused (SIGSTOP) past its lease; b takes the channel and delivers
    wait_for(lambda: b.step() == 0, "b takes over", timeout=5)
    assert b_channel.calls == [("publish", key)]
    (second,) = record(a_store, "two")
    # a resumes: its old lease marks nothing, and it does not deliver
    from broadcaster.store import LeaseLost

    with pytest.raises(LeaseLost):
        a_store.mark_sending(second, lease=stale)
    assert a.step() is not None and a_channel.calls == []
    assert a_store.post(second).state is PostState.PENDING  # type: ignore[union-attr]


def test_two_instances_planning_at_the_same_moment_record_each_post_once(
    tmp_path, postgres_url: str
) -> None:
    import threading
    from datetime import UTC, datetime

    from support import config_toml, opening

    from broadcaster.app import build
    from broadcaster.config import load_config
    from broadcaster.events import merge

    apps = []
    for name in ("a", "b"):
        home = tmp_path / name
        home.mkdir()
        (home / "state.toml").write_text("")
        path = home / "config.toml"
        path.write_text(
            config_toml(
                '[channels.d-en]\nplatform = "dryrun"\nlanguage = "en"\n',
                f'[store]\nurl = "{postgres_url}"\ninstance = "{name}"\n',
            )
        )
        apps.append(build(load_config(path), dry_run=False))
    try:
        now = datetime.now(UTC)
        incidents = [merge(apps[0].store, opening(f"inc-{i}"), origin="t") for i in range(20)]
        barrier = threading.Barrier(2, timeout=20)
        errors: list[BaseException] = []

        def plan(app) -> None:
            try:
                app.editor.ingest(incidents, now)  # the same description, by both
                barrier.wait()
                app.editor.run(now)
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=plan, args=(app,)) for app in apps]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert errors == []
        posts = apps[0].store.posts()
        assert len(posts) == 20 and len({p.key for p in posts}) == 20
        assert {s.revision for s in apps[1].store.snapshots()} == {1}
    finally:
        for app in apps:
            app.close()


def test_a_holder_paused_after_marking_sending_never_sends_once_another_held_the_channel(
    stores: tuple[PostgresStore, PostgresStore],
) -> None:
    """a marks the post 'sending' and is paused before its request; b takes over, looks it
    up, sends it and stops cleanly (its lease released). When a resumes, the channel is free
    again and a takes it anew (a new fencing token): the post it was about to send went out
    under another token, so a must not send it, only look it up."""
    a_store, b_store = stores
    (key,) = record(a_store, "one")
    a_channel, b_channel = ScriptedChannel(), ScriptedChannel()
    a, b = worker(a_store, a_channel, "a"), worker(b_store, b_channel, "b")
    ticks = [0.0]
    a.lease.monotonic = lambda: ticks[0]  # a's own clock: it stands still while paused
    marked = a_store.mark_sending

    def paused_after_marking(k: str, *, lease: object = None) -> bool:
        done = marked(k, lease=lease)  # type: ignore[arg-type]
        wait_for(lambda: b.step() == 0, "b takes over while a is paused", timeout=5)
        b.lease.release()  # b stops cleanly
        ticks[0] += TTL.total_seconds()  # a wakes up a TTL later
        return done

    a_store.mark_sending = paused_after_marking  # type: ignore[method-assign]
    a.step()
    a_store.mark_sending = marked  # type: ignore[method-assign]
    assert b_channel.calls == [("find", key), ("publish", key)]
    assert a_channel.calls == []  # nothing sent under the new token either
    assert a_store.post(key).state is PostState.SENT  # type: ignore[union-attr]
    a.step()  # a delivers again: nothing left, the post was sent by b
    assert a_channel.calls == []


def test_instances_sharing_one_config_and_one_name_never_both_hold_a_channel(
    tmp_path, postgres_url: str
) -> None:
    from support import config_toml

    from broadcaster.app import build
    from broadcaster.config import load_config

    apps = []
    for home in (tmp_path / "a", tmp_path / "b"):
        home.mkdir()
        (home / "state.toml").write_text("")
        (home / "config.toml").write_text(
            config_toml(
                '[channels.d-en]\nplatform = "dryrun"\nlanguage = "en"\n',
                f'[store]\nurl = "{postgres_url}"\ninstance = "eu-west-1"\n',
            )
        )
        apps.append(build(load_config(home / "config.toml"), dry_run=False))
    try:
        leases = [app.delivery.workers["d-en"].lease for app in apps]
        assert [lease.usable() for lease in leases] == [True, False]
        assert leases[0].holder != leases[1].holder
        assert leases[0].holder.startswith("eu-west-1")  # the name status shows
    finally:
        for app in apps:
            app.close()
