"""Two daemons (subprocesses) on one PostgreSQL, publishing to the X and Mastodon sandboxes:
fed through both, each killed with SIGKILL mid-delivery in turn, one stopped with SIGSTOP past
its lease, the database restarted under load. Every post goes out exactly once, threads stay
linear, and a paused instance posts and marks nothing after losing its lease."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pg_server import PostgresServer
from support import wait_for
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


class Instance(DaemonProcess):
    """One instance: its own directory (config, state file copy, data_dir), a shared store."""

    def __init__(self, tmp: Path, name: str, accounts: list[Account], url: str) -> None:
        home = tmp / name
        home.mkdir()
        config = write_config(home, accounts, cadence="1s")
        with config.open("a") as f:
            f.write(f'\n[store]\nurl = "{url}"\nlease_ttl = "{TTL}s"\ninstance = "{name}"\n')
        super().__init__(home, config)
        self.name = name
        self.url = url

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
    for i in instances:
        write_state(i.tmp / "state.toml", IDS, status)


def test_two_instances_each_killed_mid_delivery_post_everything_once(
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
        a.wait_sent(6)
        takeovers = 0
        for channel, server in (("x-en", x), ("mastodon-en", m)):
            victim = wait_for(lambda c=channel: holder(instances, c), f"{channel} held")
            # Kill while the platform holds a post it created but never answered.
            server.faults.hang_next(1, seconds=3, after_processing=True)
            assert server.wait_for(
                lambda s=server: any(r.fault == "timeout" for r in s.requests_log()), 10
            )
            victim.kill()
            before = victim.sent()
            other = b if victim is a else a
            wait_for(
                lambda c=channel, o=other: holder(instances, c) is o,
                f"{other.name} takes {channel} over",
                timeout=10,
            )
            takeovers += 1
            server.faults.reset()
            server.faults.configure(latency=0.03)
            other.wait_sent(before + 4)
            victim.start()
        state_everywhere(instances, "resolved")

        def finished() -> bool:
            for i in instances:
                assert i.alive(), i.log()[-3000:]
            (open_posts,) = a.query(
                "SELECT COUNT(*) FROM posts WHERE state IN ('pending', 'sending')"
            )[0]
            (closings,) = a.query(
                "SELECT COUNT(*) FROM posts WHERE kind = 'resolved' AND state = 'sent'"
            )[0]
            return open_posts == 0 and closings == len(IDS) * len(accounts)

        wait_for(finished, "every thread closed and delivered", 30)
        for i in instances:
            assert i.stop() == 0, i.log()[-3000:]
        assert takeovers == 2
        logs = a.log() + b.log()
        assert "took the channel over from" in logs
    finally:
        for i in instances:
            if i.alive():
                i.kill()
    store = PostgresStore(postgres_url, pool_size=1)
    try:
        for account in accounts:
            sent = check_threads(store, account)  # type: ignore[arg-type]
            assert {p.incident_id for p in sent} == set(IDS)
        assert not store.posts(states=(PostState.FAILED,))
    finally:
        store.close()


def test_an_instance_stopped_past_its_lease_posts_and_marks_nothing_when_resumed(
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
        victim.proc.send_signal(signal.SIGSTOP)
        wait_for(lambda: holder(instances, "x-en") is other, "the other takes over", timeout=10)
        sent_before = other.sent()
        other.wait_sent(sent_before + 2)
        posts_before = {p.id for p in x.posts()}
        victim.proc.send_signal(signal.SIGCONT)
        # While resumed, the victim learns it lost the lease; everything goes on via the other.
        other.wait_sent(other.sent() + 2)
        assert holder(instances, "x-en") is other
        rows = victim.query("SELECT remote_id FROM posts WHERE state = 'sent'")
        assert {str(r[0]) for r in rows} == {p.id for p in x.posts()}
        assert posts_before <= {p.id for p in x.posts()}
        wait_for(lambda: "x-en: lease lost" in victim.log(), "the resumed instance steps back")
        for i in instances:
            assert i.stop() == 0
    finally:
        for i in instances:
            if i.proc is not None and i.alive():
                i.proc.send_signal(signal.SIGCONT)
                i.kill()
    store = PostgresStore(postgres_url, pool_size=1)
    try:
        check_threads(store, accounts[0])  # type: ignore[arg-type]
    finally:
        store.close()


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
        postgres_server.restart(mode="immediate")
        instances[0].wait_sent(instances[0].sent() + 3, timeout=30)
        state_everywhere(instances, "resolved")
        wait_for(
            lambda: (
                instances[0].query(
                    "SELECT COUNT(*) FROM posts WHERE state = 'sent' AND kind = 'resolved'"
                )
                == [(len(IDS),)]
            ),
            "every thread closed",
            timeout=30,
        )
        for i in instances:
            assert i.alive(), i.log()[-3000:]
            assert i.stop() == 0
    finally:
        for i in instances:
            if i.alive():
                i.kill()
        print(json.dumps([i.log() for i in instances])[-4000:])
    store = PostgresStore(postgres_url, pool_size=1)
    try:
        sent = check_threads(store, accounts[0])  # type: ignore[arg-type]
        assert {p.incident_id for p in sent} == set(IDS)
    finally:
        store.close()


def test_while_postgresql_is_down_intake_answers_503_healthz_says_why_and_all_resumes(
    tmp_path: Path,
    sandboxes: Callable[..., Any],
    postgres_url: str,
    postgres_server: PostgresServer,
) -> None:
    import requests
    from pg_server import free_port
    from support import opening

    x = sandboxes(XSandbox, [X_EN])
    accounts = [Account("x-en", x, X_EN, {"timeout": "2s"})]
    (node,) = [Instance(tmp_path, "a", accounts, postgres_url)]
    write_state(node.tmp / "state.toml", [], "investigating")
    port, token = free_port(), "an-intake-token-0123456789"
    with node.config.open("a") as f:
        f.write(f'\n[intake.http]\nlisten = "127.0.0.1:{port}"\ntoken = "{token}"\n')
    base, auth = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {token}"}
    try:
        node.start()
        ok = requests.post(f"{base}/v1/events", json=opening("one"), headers=auth, timeout=10)
        assert ok.status_code == 202
        node.wait_sent(1)
        metrics = requests.get(f"{base}/metrics", timeout=10).text
        assert 'broadcaster_channel_lease_held{channel="x-en"} 1.0' in metrics
        postgres_server.stop()
        try:
            refused = requests.post(
                f"{base}/v1/events", json=opening("two"), headers=auth, timeout=10
            )
            assert refused.status_code == 503, refused.text
            assert refused.headers["Retry-After"] == "5"
            health = requests.get(f"{base}/healthz", timeout=10)
            assert health.status_code == 503
            assert "the store cannot be read" in health.text, health.text
            assert "s3cret" not in health.text and "s3cret" not in node.log()
        finally:
            postgres_server.start()
        wait_for(
            lambda: requests.get(f"{base}/healthz", timeout=10).status_code == 200,
            "healthy again by itself",
            timeout=20,
        )
        again = requests.post(f"{base}/v1/events", json=opening("two"), headers=auth, timeout=10)
        assert again.status_code == 202
        node.wait_sent(2)
        assert node.stop() == 0
    finally:
        if node.alive():
            node.kill()
    store = PostgresStore(postgres_url, pool_size=1)
    try:
        sent = check_threads(store, accounts[0])  # type: ignore[arg-type]
        assert {p.incident_id for p in sent} == {"one", "two"}
    finally:
        store.close()
