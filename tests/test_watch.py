"""Push, not poll: a change is taken in as it happens (the kernel's notifications for the
state file and the spool, a blocking read on Redis), and polling still works where
notifications do not (``watch = "poll"``, or none available).

Every daemon here polls once an hour at most: what arrives within seconds came through a
notification. The ``poll`` cases poll every 50 ms instead, with notifications off."""

from __future__ import annotations

import errno
import json
import logging
import os
import time
from pathlib import Path

import inotify_simple
import pytest
from redis_server import RedisServer
from support import X_EN_WITHOUT_SECRETS, InProcessDryRun, config_toml, opening, wait_for

from broadcaster.sources.redis import RedisStreamSource

STATE = """
[[incidents]]
id = "sbg-power"
title = "Power outage in Strasbourg"
status = "{status}"
severity = "critical"
services = ["VPS"]
regions = ["SBG"]
started_at = 2026-11-26T07:23:00+01:00
message = "{message}"
"""
HOUR = 'poll_interval = "1h"'


def config(*tables: str, watch: str = "auto") -> str:
    poll = "50ms" if watch == "poll" else "1h"
    text = config_toml(X_EN_WITHOUT_SECRETS, *tables, poll_interval=poll)
    return text.replace("[broadcaster]\n", f'[broadcaster]\nwatch = "{watch}"\n', 1)


def state(status: str = "investigating", message: str = "Power lost") -> str:
    return STATE.format(status=status, message=message)


@pytest.fixture
def run(tmp_path: Path):
    runs: list[InProcessDryRun] = []

    def make(text: str) -> InProcessDryRun:
        r = InProcessDryRun(tmp_path, text)
        runs.append(r)
        return r

    yield make
    for r in runs:
        r.stop()


def messages(r: InProcessDryRun) -> list[str]:
    return [p["text"] for p in r.posts()]


@pytest.mark.parametrize("watch", ["auto", "poll"])
def test_a_save_in_place_or_by_rename_is_posted_promptly(run, tmp_path: Path, watch: str) -> None:
    r = run(config(watch=watch))
    r.start()
    (r.tmp / "state.toml").write_text(state())  # in place, as most editors
    r.wait_posts(1)
    swap = tmp_path / ".state.toml.swp"
    swap.write_text(state("identified", "Feeds restored one by one"))
    os.replace(swap, tmp_path / "state.toml")  # atomic rename, as vim and sed -i
    posts = r.wait_posts(2)
    assert posts[1]["kind"] == "update" and "Feeds restored one by one" in posts[1]["text"]


def test_a_configmap_symlink_swap_is_posted_promptly(run, tmp_path: Path) -> None:
    """Kubernetes mounts a ConfigMap as state.toml -> ..data/state.toml, ..data -> ..v1,
    and updates it by pointing a new ..data at a new directory (an atomic rename)."""
    r = run(config())
    (tmp_path / "..v1").mkdir()
    (tmp_path / "..v1" / "state.toml").write_text(state())
    (tmp_path / "..data").symlink_to("..v1")
    r.start()
    (tmp_path / "state.toml").unlink()
    (tmp_path / "state.toml").symlink_to("..data/state.toml")
    r.wait_posts(1)
    (tmp_path / "..v2").mkdir()
    (tmp_path / "..v2" / "state.toml").write_text(state("monitoring", "Power is back"))
    (tmp_path / "..data_tmp").symlink_to("..v2")
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
    posts = r.wait_posts(2)
    assert "Power is back" in posts[1]["text"]
    # And an edit in place of the file the link points to now.
    (tmp_path / "..v2" / "state.toml").write_text(state("monitoring", "All racks powered"))
    assert "All racks powered" in r.wait_posts(3)[2]["text"]


@pytest.mark.parametrize("watch", ["auto", "poll"])
def test_a_spool_file_is_posted_promptly(run, watch: str) -> None:
    r = run(config('[intake.spool]\ndirectory = "spool"', watch=watch))
    r.start()
    incoming = r.tmp / "spool" / "incoming"
    part = incoming / ".0001.json.part"
    part.write_text(json.dumps(opening()))
    part.rename(incoming / "0001.json")
    (post,) = r.wait_posts(1)
    assert post["kind"] == "opened"


def test_a_spool_backlog_larger_than_a_poll_is_all_taken_in(run) -> None:
    r = run(config('[intake.spool]\ndirectory = "spool"'))
    daemon = r.start()
    assert daemon.app is not None
    (spool,) = [s for s in daemon.app.sources if s.name == "spool"]
    spool.batch_size = 2  # type: ignore[attr-defined]
    incoming = r.tmp / "spool" / "incoming"
    events = [opening()] + [{"id": "sbg-power", "message": f"step {i}"} for i in range(1, 7)]
    # Dropped while the daemon is busy: their notifications come at once, for 7 files
    # that take 4 polls.
    with daemon._plan_lock:
        for i, event in enumerate(events):
            part = incoming / f".{i:04d}.part"
            part.write_text(json.dumps(event))
            part.rename(incoming / f"{i:04d}.json")
    wait_for(lambda: not any(incoming.glob("*.json")), "every file taken in", timeout=10)
    snapshot = daemon.app.store.snapshot("sbg-power")
    assert snapshot is not None and snapshot.revision == len(events)


def test_a_good_spool_file_behind_a_full_poll_of_bad_ones_is_taken_in_at_once(run) -> None:
    r = run(config('[intake.spool]\ndirectory = "spool"'))
    daemon = r.start()
    assert daemon.app is not None
    (spool,) = [s for s in daemon.app.sources if s.name == "spool"]
    spool.batch_size = 2  # type: ignore[attr-defined]
    incoming = r.tmp / "spool" / "incoming"
    with daemon._plan_lock:  # all three arrive before the first poll
        for i, text in enumerate(["{not json", "[1, 2", json.dumps(opening())]):
            part = incoming / f".{i:04d}.part"
            part.write_text(text)
            part.rename(incoming / f"{i:04d}.json")
    # The first poll refuses both bad files; the good one is polled at once after them,
    # not at the 60-second safety poll.
    wait_for(lambda: daemon.app.store.snapshot("sbg-power") is not None, "the good file", 10)
    assert len(list((r.tmp / "spool" / "rejected").glob("*.json"))) == 2


@pytest.fixture
def redis_server(tmp_path: Path):
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop(kill=True)


@pytest.mark.parametrize("watch", ["auto", "poll"])
def test_a_redis_entry_is_posted_promptly_and_stopping_is_prompt(
    run, redis_server: RedisServer, watch: str
) -> None:
    r = run(config(f'[intake.redis]\nurl = "{redis_server.url}"', watch=watch))
    r.start()
    client = redis_server.client()
    try:
        client.xadd("broadcaster:events", {"event": json.dumps(opening())})
        (post,) = r.wait_posts(1)
        assert post["kind"] == "opened"
    finally:
        client.close()
    # The watcher is blocked in XREADGROUP ... BLOCK: stopping does not wait for it.
    started = time.monotonic()
    r.stop()
    assert time.monotonic() - started < 3


def test_without_notifications_the_daemon_polls_and_says_so(
    run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refused(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(inotify_simple.INotify, "__init__", refused)  # the kernel's limit
    caplog.set_level(logging.WARNING, logger="broadcaster.daemon")
    r = run(config().replace(HOUR, 'poll_interval = "50ms"'))
    r.start()
    assert "file: no change notifications" in caplog.text
    assert "polling every 0.05s instead" in caplog.text
    (tmp_path / "state.toml").write_text(state())
    r.wait_posts(1)


def test_an_unknown_watch_mode_is_refused_naming_the_key(tmp_path: Path) -> None:
    from broadcaster.config import ConfigError, load_config

    path = tmp_path / "config.toml"
    path.write_text(config().replace('watch = "auto"', 'watch = "inotify"'))
    with pytest.raises(ConfigError, match=r"broadcaster\.watch.*auto, poll"):
        load_config(path)


def test_a_blocking_read_hands_its_entries_over_in_order_and_again_until_settled(
    redis_server: RedisServer,
) -> None:
    stream, group = "broadcaster:events", "broadcaster"
    source = RedisStreamSource(redis_server.url, stream, group, "c1")
    client = redis_server.client()
    try:
        assert source.poll() is None  # connected, the group created
        assert source.watch() is None
        ids = [client.xadd(stream, {"event": json.dumps(opening(f"i{k}"))}) for k in range(3)]
        assert source.wait(5)
        origins = [f"redis:{stream}#{entry_id.decode()}" for entry_id in ids]
        batch = source.poll()
        assert batch is not None and [e.origin for e in batch.events] == origins
        # Neither acknowledged nor refused (the daemon failed): handed over again, in order.
        again = source.poll()
        assert again is not None and [e.origin for e in again.events] == origins
        for event in again.events:
            event.ack()
        assert source.poll() is None
        assert client.xpending(stream, group)["pending"] == 0
    finally:
        source.interrupt()
        source.close()
        client.close()
