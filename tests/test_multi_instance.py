"""Two daemons (subprocesses) on one PostgreSQL, publishing to the X and Mastodon sandboxes:
fed through both, each killed with SIGKILL mid-delivery in turn, one stopped with SIGSTOP past
its lease, the database restarted under load. Every post goes out exactly once, threads stay
linear, and a paused instance posts and marks nothing after losing its lease."""

from __future__ import annotations

import itertools
import json
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from pg_server import PostgresServer, free_port
from redis_server import RedisServer
from support import opening, wait_for
from test_platforms import (
    M_EN,
    X_EN,
    Account,
    DaemonProcess,
    MastodonSandbox,
    XSandbox,
    check_threads,
    write_config,
    write_state,
)

from broadcaster.model import PostState
from broadcaster.sandbox import Faults
from broadcaster.sandbox.http import SandboxServer
from broadcaster.store.postgres import PostgresStore

IDS = ["sbg-power", "rbx-network"]


@pytest.fixture
def sandboxes() -> Iterator[Callable[..., Any]]:
    """``sandboxes(XSandbox, [accounts])``: started now, stopped after the test."""
    started: list[SandboxServer] = []

    def make(kind: type[SandboxServer], accounts: list[Any]) -> Any:
        options: dict[str, Any] = {}
        if issubclass(kind, XSandbox):
            options["daily_post_limit"] = 100_000
        server = kind(accounts=accounts, faults=Faults(seed=len(started) + 1), **options)
        started.append(server.start())
        return server

    yield make
    for server in started:
        server.stop()


TTL = 1.0
# After a takeover, a post left 'sending' is looked up only once the former holder's request
# must have ended: four times the channel's timeout ("2s" in these tests).
SETTLE = 4 * 2.0
TOKEN = "an-intake-token-0123456789"


class Instance(DaemonProcess):
    """One instance: its own directory (config, state file copy, data_dir), a shared store."""

    def __init__(self, tmp: Path, name: str, accounts: list[Account], url: str) -> None:
        home = tmp / name
        home.mkdir()
        config = write_config(home, accounts, cadence="1s")
        self.port = free_port()
        with config.open("a") as f:
            f.write(
                f'\n[store]\nurl = "{url}"\nlease_ttl = "{TTL}s"\ninstance = "{name}"\n'
                f'\n[intake.http]\nlisten = "127.0.0.1:{self.port}"\ntoken = "{TOKEN}"\n'
            )
        super().__init__(home, config)
        self.name = name
        self.url = url
        self.base = f"http://127.0.0.1:{self.port}"

    def send(self, event: dict[str, Any]) -> requests.Response:
        """POST one event to this instance's HTTP intake."""
        return requests.post(
            f"{self.base}/v1/events",
            json=event,
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
        )

    def accepted(self, event: dict[str, Any]) -> None:
        answer = self.send(event)
        assert answer.status_code == 202, (self.name, answer.text)

    def metrics(self) -> str:
        return requests.get(f"{self.base}/metrics", timeout=10).text

    def lines(self, needle: str) -> int:
        return self.log().count(needle)

    def start(self) -> None:
        """Started, and serving (a SIGTERM before then would find no handler yet)."""
        runs = self.log().count("broadcaster running") if self.log_path.exists() else 0
        super().start()
        wait_for(
            lambda: self.log_path.read_text().count("broadcaster running") > runs,
            f"{self.name} running",
            timeout=20,
        )

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        try:
            with psycopg.connect(self.url, connect_timeout=2) as conn:
                return conn.execute(sql.encode()).fetchall()
        except psycopg.Error:
            return []

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def holder(instances: list[Instance], channel: str) -> Instance | None:
    rows = instances[0].query(
        f"SELECT holder FROM leases WHERE channel = '{channel}' AND expires_at > now()"
    )
    # "a#3f2c1e": the instance's name, then its process's own tag
    return next((i for i in instances if rows and i.name == rows[0][0].split("#")[0]), None)


def state_everywhere(instances: list[Instance], status: str) -> None:
    """The same state file saved on each instance's own copy, as a deployment pushes it."""
    for i in instances:
        write_state(i.tmp / "state.toml", IDS, status)


def delivered(instances: list[Instance], incidents: int, channels: int) -> Callable[[], bool]:
    """Every thread closed and delivered: nothing pending or in flight, every resolution
    sent; and both instances still alive."""

    def done() -> bool:
        for i in instances:
            assert i.alive(), i.log()[-3000:]
        rows = instances[0].query(
            "SELECT COUNT(*) FILTER (WHERE state IN ('pending', 'sending')), "
            "COUNT(*) FILTER (WHERE kind = 'resolved' AND state = 'sent') FROM posts"
        )
        return bool(rows) and rows[0] == (0, incidents * channels)

    return done


def check_everything_posted_once(url: str, accounts: list[Account], ids: set[str]) -> None:
    """On each platform, each incident is one linear thread (every post replies to the one
    before it) from its opening to its resolution, each post exactly once, and what the
    platform holds is exactly what the store says it sent."""
    store = PostgresStore(url, pool_size=1)
    try:
        assert not store.posts(states=(PostState.FAILED, PostState.PENDING, PostState.SENDING))
        for account in accounts:
            sent = check_threads(store, account)  # type: ignore[arg-type]
            assert {p.incident_id for p in sent} == ids
            threads = [
                t for t in account.server.threads().values() if t[0].account == account.username
            ]
            assert len(threads) == len(ids), f"{account.name}: one thread per incident"
            for thread in threads:
                assert all(
                    post.in_reply_to == before.id for before, post in itertools.pairwise(thread)
                ), f"{account.name}: a branch in {[p.id for p in thread]}"
            for incident in ids:
                kinds = [p.kind.value for p in sent if p.incident_id == incident]
                assert kinds[0] == "opened" and kinds[-1] == "resolved", (account.name, kinds)
                assert kinds.count("opened") == kinds.count("resolved") == 1
    finally:
        store.close()


def test_two_instances_fed_through_either_each_killed_and_restarted_post_everything_once(
    tmp_path: Path, sandboxes: Callable[..., Any], postgres_url: str
) -> None:
    x = sandboxes(XSandbox, [X_EN])
    m = sandboxes(MastodonSandbox, [M_EN])
    for server in (x, m):
        server.faults.configure(latency=0.03)
    fast = {"timeout": "2s", "retry_initial": "20ms", "retry_max": "200ms"}
    accounts = [Account("x-en", x, X_EN, fast), Account("mastodon-en", m, M_EN, fast)]
    instances = [Instance(tmp_path, n, accounts, postgres_url) for n in ("a", "b")]
    state_everywhere(instances, "investigating")
    a, b = instances
    try:
        for i in instances:
            i.start()
        # Events through either: the same opening to both (one revision), another to b.
        a.accepted(opening("evt-1"))
        b.accepted(opening("evt-1"))
        b.accepted(opening("evt-2"))
        a.wait_sent(8)
        victims: list[Instance] = []
        for channel, server in (("x-en", x), ("mastodon-en", m)):
            victim = wait_for(lambda c=channel: holder(instances, c), f"{channel} held")
            assert victim not in victims, "each instance is killed in turn"
            other = b if victim is a else a
            found = other.lines("was already published as")
            # Kill while the platform holds a post it created but never answered.
            server.faults.hang_next(1, seconds=3, after_processing=True)
            assert server.wait_for(
                lambda s=server: any(r.fault == "timeout" for r in s.requests_log()), 10
            )
            victim.kill()
            wait_for(
                lambda c=channel, o=other: holder(instances, c) is o,
                f"{other.name} takes {channel} over",
                timeout=10,
            )
            server.faults.reset()
            server.faults.configure(latency=0.03)
            server.clear_requests_log()
            # The post the victim left 'sending' is found on the platform, not re-sent.
            wait_for(
                lambda o=other, n=found: o.lines("was already published as") > n,
                f"{other.name} reconciles the post in flight on {channel}",
                timeout=SETTLE + 5,
            )
            other.wait_sent(other.sent() + 4)
            metrics = other.metrics()
            assert f'broadcaster_channel_lease_held{{channel="{channel}"}} 1.0' in metrics
            assert f'lease_takeovers_total{{channel="{channel}"}} 1.0' in metrics
            victim.start()  # restarted: it rejoins as the standby
            victims.append(victim)
        assert {v.name for v in victims} == {"a", "b"}
        for i in instances:
            assert "took the channel over from" in i.log()
        # Both restarted instances take intake again; the state file closes the rest.
        for i in instances:
            i.accepted({"id": "evt-1", "status": "resolved", "message": "Power is back"})
        a.accepted({"id": "evt-2", "status": "resolved", "message": "Power is back"})
        state_everywhere(instances, "resolved")
        wait_for(delivered(instances, len(IDS) + 2, len(accounts)), "every thread closed", 30)
        revisions = a.query("SELECT incident_id, COUNT(*) FROM revisions GROUP BY incident_id")
        assert dict(revisions) == dict.fromkeys([*IDS, "evt-1", "evt-2"], 2)
        for i in instances:
            assert i.stop() == 0, i.log()[-3000:]
    finally:
        for i in instances:
            if i.alive():
                i.kill()
    check_everything_posted_once(postgres_url, accounts, {*IDS, "evt-1", "evt-2"})


def test_an_instance_stopped_mid_delivery_past_its_lease_posts_and_marks_nothing_when_resumed(
    tmp_path: Path, sandboxes: Callable[..., Any], postgres_url: str
) -> None:
    x = sandboxes(XSandbox, [X_EN])
    accounts = [Account("x-en", x, X_EN, {"timeout": "2s"})]
    instances = [Instance(tmp_path, n, accounts, postgres_url) for n in ("a", "b")]
    state_everywhere(instances, "investigating")
    try:
        for i in instances:
            i.start()
        instances[0].wait_sent(2)
        victim = wait_for(lambda: holder(instances, "x-en"), "x-en held")
        other = instances[1] if victim is instances[0] else instances[0]
        assert victim.proc is not None
        # Stopped mid-request: the platform has the post, the victim has no answer yet.
        x.faults.hang_next(1, seconds=2, after_processing=True)
        assert x.wait_for(lambda: any(r.fault == "timeout" for r in x.requests_log()), 10)
        victim.proc.send_signal(signal.SIGSTOP)
        wait_for(lambda: holder(instances, "x-en") is other, "the other takes over", timeout=10)
        wait_for(
            lambda: other.lines("was already published as") == 1,
            "the post reconciled",
            timeout=SETTLE + 5,
        )
        other.wait_sent(other.sent() + 2)
        marks = victim.lines(": sent ")
        victim.proc.send_signal(signal.SIGCONT)
        # Resumed, the victim learns it lost the lease; everything goes on via the other.
        wait_for(lambda: "x-en: lease lost" in victim.log(), "the resumed instance steps back")
        other.wait_sent(other.sent() + 2)
        assert holder(instances, "x-en") is other
        assert victim.lines(": sent ") == marks  # it marked nothing
        assert 'broadcaster_channel_lease_held{channel="x-en"} 0.0' in victim.metrics()
        state_everywhere(instances, "resolved")
        wait_for(delivered(instances, len(IDS), 1), "every thread closed", 30)
        assert victim.lines(": sent ") == marks  # nor later: the other holds the channel
        for i in instances:
            assert i.stop() == 0
    finally:
        for i in instances:
            if i.proc is not None and i.alive():
                i.proc.send_signal(signal.SIGCONT)
                i.kill()
    check_everything_posted_once(postgres_url, accounts, set(IDS))


def test_postgresql_restarted_under_load_loses_nothing(
    tmp_path: Path,
    sandboxes: Callable[..., Any],
    postgres_url: str,
    postgres_server: PostgresServer,
) -> None:
    x = sandboxes(XSandbox, [X_EN])
    accounts = [Account("x-en", x, X_EN, {"timeout": "2s"})]
    instances = [Instance(tmp_path, n, accounts, postgres_url) for n in ("a", "b")]
    state_everywhere(instances, "investigating")
    try:
        for i in instances:
            i.start()
        instances[0].wait_sent(3)
        postgres_server.restart(mode="immediate")  # as if killed: recovery from its WAL
        instances[0].wait_sent(instances[0].sent() + 3, timeout=30)
        state_everywhere(instances, "resolved")
        wait_for(delivered(instances, len(IDS), 1), "every thread closed", 30)
        for i in instances:
            assert i.stop() == 0
    finally:
        for i in instances:
            if i.alive():
                i.kill()
    check_everything_posted_once(postgres_url, accounts, set(IDS))


def test_while_postgresql_is_down_intake_answers_503_healthz_says_why_and_all_resumes(
    tmp_path: Path,
    sandboxes: Callable[..., Any],
    postgres_url: str,
    postgres_server: PostgresServer,
) -> None:
    x = sandboxes(XSandbox, [X_EN])
    accounts = [Account("x-en", x, X_EN, {"timeout": "2s"})]
    redis_server = RedisServer(tmp_path / "redis")
    redis_server.start()
    (node,) = [Instance(tmp_path, "a", accounts, postgres_url)]
    write_state(node.tmp / "state.toml", [], "investigating")
    with node.config.open("a") as f:
        f.write(
            '\n[intake.spool]\ndirectory = "spool"\n'
            f'\n[intake.redis]\nurl = "{redis_server.url}"\nconsumer = "a"\n'
        )
    incoming, done = node.tmp / "spool" / "incoming", node.tmp / "spool" / "done"
    stream, group, sources = "broadcaster:events", "broadcaster", ("spool", "redis")
    client = redis_server.client()
    try:
        node.start()
        node.accepted(opening("one"))
        node.wait_sent(1)
        assert 'broadcaster_channel_lease_held{channel="x-en"} 1.0' in node.metrics()
        postgres_server.stop()
        try:
            refused = node.send(opening("two"))
            assert refused.status_code == 503, refused.text
            assert refused.headers["Retry-After"] == "5"
            health = requests.get(f"{node.base}/healthz", timeout=10)
            assert health.status_code == 503
            assert "the store cannot be read" in health.text, health.text
            assert "s3cret" not in health.text and "s3cret" not in node.log()
            # The spool keeps its file, Redis keeps its entry pending: neither is taken
            # from its queue before the store committed it.
            part = incoming / ".three.part"
            part.write_text(json.dumps(opening("three")))
            part.rename(incoming / "three.json")
            client.xadd(stream, {"event": json.dumps(opening("four"))})
            wait_for(
                lambda: client.xpending(stream, group)["pending"] == 1,
                "the Redis entry read, left pending",
            )
            wait_for(
                lambda: all(f"could not record input from {q}" in node.log() for q in sources),
                "both sources tried, and failed, to commit",
                timeout=30,  # each try waits for the pool's 3 s connect timeout
            )
            assert [p.name for p in incoming.iterdir()] == ["three.json"]
            assert not done.exists() or not any(done.iterdir())
        finally:
            postgres_server.start()
        wait_for(
            lambda: requests.get(f"{node.base}/healthz", timeout=10).status_code == 200,
            "healthy again by itself",
            timeout=20,
        )
        node.accepted(opening("two"))  # what the client retries after the 503
        wait_for(lambda: (done / "three.json").exists(), "the spool file applied")
        wait_for(lambda: client.xpending(stream, group)["pending"] == 0, "the entry acked")
        node.wait_sent(4)
        assert node.stop() == 0
    finally:
        if node.alive():
            node.kill()
        client.close()
        redis_server.stop()
    store = PostgresStore(postgres_url, pool_size=1)
    try:
        sent = check_threads(store, accounts[0])  # type: ignore[arg-type]
        assert {p.incident_id for p in sent} == {"one", "two", "three", "four"}
    finally:
        store.close()
