"""HTTP intake, /healthz and /metrics, on a real daemon (dry run) and real loopback sockets."""

from __future__ import annotations

import http.client
import io
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import (
    MASTODON_FR,
    X_EN,
    InProcessDryRun,
    bilingual_opening,
    config_toml,
    wait_for,
)

from broadcaster import app
from broadcaster import daemon as daemon_module
from broadcaster.daemon import Daemon
from broadcaster.instancelock import InstanceLock
from broadcaster.store import ChannelChange, StoreUnavailable

TOKEN = "intake-token-5b0c1e7d9f2a4c68"
TOKEN_VAR = "BROADCASTER_TEST_INTAKE_TOKEN"


def config_text(listen: str = "127.0.0.1:0", max_body: int = 4096, extra: str = "") -> str:
    intake = f"""
[intake.http]
listen = "{listen}"
token = "${{{TOKEN_VAR}}}"
max_body = {max_body}
{extra}
"""
    return config_toml(X_EN, MASTODON_FR, intake)


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Service(InProcessDryRun):
    """The daemon in process with its HTTP intake on a free loopback port; every answer it
    gave is kept."""

    def __init__(self, tmp: Path, config: str) -> None:
        super().__init__(tmp, config)
        self.responses: list[Response] = []

    @property
    def address(self) -> tuple[str, int]:
        assert self.shell is not None, "not started"
        address = self.shell.http_address
        assert address is not None
        return address

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Response:
        conn = http.client.HTTPConnection(*self.address, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {}, **kwargs)
            r = conn.getresponse()
            response = Response(r.status, r.headers, r.read())
        finally:
            conn.close()
        self.responses.append(response)
        return response

    def post(self, event: Any, token: str | None = TOKEN, raw: bytes | None = None) -> Response:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        body = raw if raw is not None else json.dumps(event).encode()
        return self.request("POST", "/v1/events", body, headers)

    def metrics(self) -> dict[tuple[str, frozenset], float]:
        r = self.request("GET", "/metrics")
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(r.body.decode())
            for s in family.samples
        }


def metric(values: dict[tuple[str, frozenset], float], name: str, **labels: str) -> float:
    return values[(name, frozenset(labels.items()))]


@contextmanager
def running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: str = "") -> Iterator[Service]:
    """The daemon with its HTTP intake (and ``extra`` config), stopped afterwards."""
    monkeypatch.setenv(TOKEN_VAR, TOKEN)
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    s = Service(tmp_path, config_text(extra=extra))
    daemon = s.start()
    try:
        yield s
    finally:
        daemon.stop()
        s.stop()


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    with running(tmp_path, monkeypatch) as s:
        yield s
    # Whatever a test did, no answer ever carried the token.
    for r in s.responses:
        assert TOKEN.encode() not in r.body
        assert TOKEN not in str(r.headers)


# -- POST /v1/events -------------------------------------------------------------------------


def test_a_good_event_is_committed_then_posted(service: Service) -> None:
    r = service.post(bilingual_opening())
    assert r.status == 202
    assert r.json() == {"id": "sbg-power", "status": "accepted"}
    # 202 means committed: the incident is in the store before the answer left.
    assert service.daemon.app is not None
    assert service.daemon.app.store.snapshot("sbg-power") is not None
    posts = wait_for(lambda: len(service.posts()) >= 2 and service.posts(), "2 dry-run posts", 5)
    assert {(p["channel"], p["kind"]) for p in posts} == {
        ("x-en", "opened"),
        ("mastodon-fr", "opened"),
    }
    assert "Power lost on both feeds" in next(p for p in posts if p["channel"] == "x-en")["text"]

    # A partial event: only what changed, merged onto what the store knows.
    r = service.post({"id": "sbg-power", "status": "identified", "message": "Generator failed"})
    assert r.status == 202
    posts = wait_for(lambda: len(service.posts()) >= 4 and service.posts(), "2 updates", 5)
    update = next(p for p in posts[2:] if p["channel"] == "x-en")
    assert update["kind"] == "update" and "Generator failed" in update["text"]


def test_the_bearer_token_is_required(service: Service) -> None:
    for headers in (
        {},
        {"Authorization": f"Bearer {TOKEN[:-1]}x"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer"},
    ):
        r = service.request("POST", "/v1/events", json.dumps(bilingual_opening()).encode(), headers)
        assert r.status == 401, headers
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        assert r.json()["errors"][0]["message"]
    wrong = service.post(bilingual_opening(), token="not-the-token-at-all")
    assert 'error="invalid_token"' in wrong.headers["WWW-Authenticate"]
    assert service.daemon.app is not None
    assert service.daemon.app.store.snapshot("sbg-power") is None, "nothing was applied"


def test_invalid_json_and_non_objects_are_400(service: Service) -> None:
    for raw in (b"{not json", b"", b"[1, 2]", b'"text"', b'{"id": NaN}', b"\xff\xfe"):
        r = service.post(None, raw=raw)
        assert r.status == 400, raw
        (error,) = r.json()["errors"]
        assert error["message"]


def test_a_refused_event_is_422_with_the_field(service: Service) -> None:
    r = service.post(bilingual_opening(status="fixed"))
    assert r.status == 422
    (error,) = r.json()["errors"]
    assert error["field"] == "status" and "fixed" in error["message"]

    r = service.post({"status": "identified"})
    assert r.status == 422
    assert r.json()["errors"][0]["field"] == "id"
    assert service.daemon.app is not None
    assert service.daemon.app.store.snapshots() == [], "nothing half-applied"

    # A value quoted back in an error never echoes the token, even when that is the value.
    r = service.post(bilingual_opening(status=TOKEN))
    assert r.status == 422 and "***" in r.json()["errors"][0]["message"]


def test_bodies_over_the_limit_or_without_a_length_are_refused(service: Service) -> None:
    big = bilingual_opening(message="x" * 5000)  # max_body is 4096
    r = service.post(big)
    assert r.status == 413
    assert "4096" in r.json()["errors"][0]["message"]

    # A client that asks first is refused before it sends the body at all.
    with socket.create_connection(service.address, timeout=5) as s:
        s.sendall(
            b"POST /v1/events HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: Bearer {TOKEN}\r\n".encode()
            + b"Content-Length: 10000000\r\nExpect: 100-continue\r\n\r\n"
        )
        head = s.recv(4096)
    assert head.startswith(b"HTTP/1.1 413 "), head

    # Without a token the size is never looked at: 401 comes first.
    assert service.post(big, token=None).status == 401

    # Chunked bodies could stream past the limit: a length is required.
    # Sent in one write: the server may answer and close before a client that
    # writes chunk by chunk has finished, which would be a broken pipe here.
    body = json.dumps(bilingual_opening()).encode()
    with socket.create_connection(service.address, timeout=5) as s:
        s.sendall(
            b"POST /v1/events HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: Bearer {TOKEN}\r\n".encode()
            + b"Transfer-Encoding: chunked\r\n\r\n"
            + f"{len(body):x}\r\n".encode()
            + body
            + b"\r\n0\r\n\r\n"
        )
        assert s.recv(4096).startswith(b"HTTP/1.1 411 ")
    with socket.create_connection(service.address, timeout=5) as s:
        s.sendall(
            b"POST /v1/events HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: Bearer {TOKEN}\r\n\r\n".encode()
        )
        assert s.recv(4096).startswith(b"HTTP/1.1 411 ")
    r = service.request(
        "POST",
        "/v1/events",
        b"{}",
        {"Authorization": f"Bearer {TOKEN}", "Content-Length": "-2"},
    )
    assert r.status == 400


def test_routes_and_methods(service: Service) -> None:
    assert service.request("GET", "/nope").status == 404
    r = service.request("GET", "/v1/events")
    assert r.status == 405 and r.headers["Allow"] == "POST"
    assert service.request("POST", "/healthz", b"").status == 405
    assert service.request("GET", "/healthz?verbose=1").status == 200
    assert "Python" not in service.request("GET", "/healthz").headers["Server"]


# -- GET /healthz ----------------------------------------------------------------------------


def test_healthz_is_ok_then_503_once_a_delivery_worker_is_dead(service: Service) -> None:
    r = service.request("GET", "/healthz")
    assert r.status == 200
    health = r.json()
    assert health["status"] == "ok" and health["reasons"] == []
    assert set(health["channels"]) == {"x-en", "mastodon-fr"}
    x = health["channels"]["x-en"]
    assert x["healthy"] and x["worker_alive"] and not x["paused"]
    assert x["undelivered"] == 0 and x["overdue"] == 0

    assert service.daemon.app is not None
    service.daemon.app.delivery.workers["x-en"].stop()
    r = service.request("GET", "/healthz")
    assert r.status == 503
    health = r.json()
    assert health["status"] == "unhealthy"
    assert any("x-en" in reason for reason in health["reasons"])
    assert not health["channels"]["x-en"]["worker_alive"]
    assert health["channels"]["mastodon-fr"]["healthy"]
    values = service.metrics()
    assert metric(values, "broadcaster_healthy") == 0
    assert metric(values, "broadcaster_delivery_worker_up", channel="x-en") == 0
    assert metric(values, "broadcaster_channel_healthy", channel="mastodon-fr") == 1


def test_healthz_and_intake_answer_while_the_open_incidents_are_planned_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_VAR, TOKEN)
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    first = Service(tmp_path, config_text())
    first.start()
    for i in range(3):
        assert first.post(bilingual_opening(f"open-{i}")).status == 202
    first.wait_posts(6)
    first.stop()
    # The next start plans the three open incidents a slice at a time: held between two.
    held, go = threading.Event(), threading.Event()
    plan = Daemon._plan

    def slowly(self: Daemon, changed: Any, *, due: bool = True) -> None:
        if not due:
            held.set()
            assert go.wait(10)
        plan(self, changed, due=due)

    monkeypatch.setattr(Daemon, "_plan", slowly)
    monkeypatch.setattr(daemon_module, "PLAN_SLICE", 1)
    again = Service(tmp_path, config_text())
    starting = threading.Thread(target=again.start)
    starting.start()
    try:
        wait_for(held.is_set, "start to plan its first slice")
        r = again.request("GET", "/healthz")
        assert r.status == 200 and r.json()["status"] == "starting"
        assert "planning every open incident (start, reload): 0 of 3 done" in r.json()["reasons"]
        assert again.post(bilingual_opening("new-one")).status == 202, "events are taken"
        again.wait_posts(8)
    finally:
        go.set()
        starting.join(10)
    try:
        assert again.request("GET", "/healthz").json()["status"] == "ok"
        assert len(again.posts()) == 8, "the open incidents were not announced again"
    finally:
        assert again.daemon is not None
        again.daemon.stop()
        again.stop()


def test_healthz_and_intake_answer_503_while_stopping(service: Service) -> None:
    assert service.request("GET", "/healthz").status == 200
    service.daemon.stop()  # what SIGTERM does, before the shutdown closes the listener
    r = service.request("GET", "/healthz")
    assert r.status == 503 and r.json()["status"] == "stopping"
    r = service.post(bilingual_opening())
    assert r.status == 503 and r.headers["Retry-After"]
    address = service.address
    service.daemon.shutdown()
    assert service.shell.http_address is None
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=1).close()


# -- GET /metrics ----------------------------------------------------------------------------


def test_metrics_after_a_scripted_run(service: Service) -> None:
    assert service.post(bilingual_opening()).status == 202
    # Accepted means committed; planning follows, and takes in whatever was committed
    # meanwhile: wait for the opening, or the update would be posted in its place.
    wait_for(lambda: len(service.posts()) >= 2, "the opening posts", 5)
    assert service.post({"id": "sbg-power", "status": "identified"}).status == 202
    assert service.post(bilingual_opening("rbx-network", severity="minor")).status == 202
    assert service.post({"id": "sbg-power", "status": "fixed"}).status == 422
    wait_for(lambda: len(service.posts()) >= 6, "6 dry-run posts", 5)

    def settled() -> dict | None:
        values = service.metrics()
        sent = sum(
            metric(values, "broadcaster_posts_sent_total", channel=c)
            for c in ("x-en", "mastodon-fr")
        )
        return values if sent == len(service.posts()) else None

    values = wait_for(settled, "the store to count every post as sent", 5)
    posts = service.posts()
    for channel in ("x-en", "mastodon-fr"):
        mine = [p for p in posts if p["channel"] == channel]
        assert len(mine) == 3
        assert metric(values, "broadcaster_posts_sent_total", channel=channel) == 3
        assert metric(values, "broadcaster_posts_failed_total", channel=channel) == 0
        assert metric(values, "broadcaster_outbox_depth", channel=channel) == 0
        assert metric(values, "broadcaster_outbox_oldest_seconds", channel=channel) == 0
        assert metric(values, "broadcaster_updates_overdue", channel=channel) == 0
        assert metric(values, "broadcaster_channel_paused", channel=channel) == 0
        assert metric(values, "broadcaster_channel_pause_remaining_seconds", channel=channel) == 0
        assert metric(values, "broadcaster_channel_healthy", channel=channel) == 1
    assert metric(values, "broadcaster_events_accepted_total", source="http") == 3
    assert metric(values, "broadcaster_events_rejected_total", source="http") == 1
    assert metric(values, "broadcaster_config_last_reload_successful") == 1
    assert metric(values, "broadcaster_config_last_reload_timestamp_seconds") > 0
    assert metric(values, "broadcaster_healthy") == 1
    assert metric(values, "broadcaster_source_ok", source="file") == 1
    assert metric(values, "broadcaster_http_requests_total", route="/v1/events", code="202") == 3


def test_metrics_show_a_pause_and_an_overdue_promise(service: Service) -> None:
    app = service.daemon.app
    assert app is not None
    assert service.post(bilingual_opening()).status == 202
    wait_for(lambda: len(service.posts()) >= 2, "the opening posts", 5)
    # A rate-limit pause, as the delivery worker records it.
    until = datetime.now(UTC) + timedelta(minutes=10)
    app.store.update_channel("x-en", ChannelChange(paused_until=until), datetime.now(UTC))
    # A promise 10 minutes in the past that nobody planned: what a stuck planner leaves.
    thread = app.store.threads()[("sbg-power", "mastodon-fr")]
    with app.store.transaction() as db:
        db.execute(
            "UPDATE threads SET promised_at = ? WHERE incident_id = ? AND channel = ?",
            ((datetime.now(UTC) - timedelta(minutes=10)).isoformat(), "sbg-power", "mastodon-fr"),
        )
    assert thread.promised_at is not None
    values = service.metrics()
    assert metric(values, "broadcaster_channel_paused", channel="x-en") == 1
    assert (
        590 < metric(values, "broadcaster_channel_pause_remaining_seconds", channel="x-en") <= 600
    )
    assert metric(values, "broadcaster_updates_overdue", channel="mastodon-fr") == 1
    assert metric(values, "broadcaster_updates_overdue", channel="x-en") == 0
    health = service.request("GET", "/healthz").json()
    assert health["status"] == "ok", "a paused channel or a late post is no reason to restart"
    assert (
        health["channels"]["x-en"]["paused"] and health["channels"]["mastodon-fr"]["overdue"] == 1
    )


def test_metrics_flag_a_maintenance_still_scheduled_after_its_start(service: Service) -> None:
    assert metric(service.metrics(), "broadcaster_maintenances_not_started") == 0
    now = datetime.now(UTC)
    forgotten = bilingual_opening(
        "sbg-maint",
        kind="maintenance",
        status="scheduled",
        started_at=(now - timedelta(hours=1)).isoformat(),
        starts_at=(now - timedelta(hours=1)).isoformat(),
        ends_at=(now + timedelta(hours=1)).isoformat(),
    )
    assert service.post(forgotten).status == 202
    wait_for(
        lambda: metric(service.metrics(), "broadcaster_maintenances_not_started") == 1,
        "the forgotten maintenance to show in /metrics",
        5,
    )
    assert service.post({"id": "sbg-maint", "status": "in_progress"}).status == 202
    wait_for(
        lambda: metric(service.metrics(), "broadcaster_maintenances_not_started") == 0,
        "a started maintenance to leave the gauge",
        5,
    )


# -- reload ------------------------------------------------------------------------------------


def test_reload_rotates_the_token_and_counts_refused_reloads(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    new_token = "rotated-token-8d41f0a9c3e2b7d5"
    monkeypatch.setenv(TOKEN_VAR, new_token)
    assert service.shell.reload() is True
    assert service.post(bilingual_opening(), token=TOKEN).status == 401
    assert service.post(bilingual_opening(), token=new_token).status == 202

    good = service.config.read_text()
    service.config.write_text(good.replace('language = "fr"', 'language = "french"'))
    assert service.shell.reload() is False
    values = service.metrics()
    assert metric(values, "broadcaster_config_last_reload_successful") == 0
    assert metric(values, "broadcaster_config_last_reload_timestamp_seconds") >= metric(
        values, "broadcaster_config_last_reload_success_timestamp_seconds"
    )
    assert service.post({"id": "sbg-power", "status": "identified"}, token=new_token).status == 202

    # A new address moves the listener; the old one stops answering.
    old = service.address
    service.config.write_text(good.replace("127.0.0.1:0", "127.0.0.2:0"))
    assert service.shell.reload() is True
    assert service.address[0] == "127.0.0.2" and service.address != old
    assert service.request("GET", "/healthz").status == 200
    with pytest.raises(OSError):
        socket.create_connection(old, timeout=1).close()
    assert metric(service.metrics(), "broadcaster_config_last_reload_successful") == 1


def test_a_listen_address_in_use_fails_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from broadcaster.config import ConfigError

    monkeypatch.setenv(TOKEN_VAR, TOKEN)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "config.toml"
        config.write_text(config_text(listen=f"127.0.0.1:{port}"))
        (tmp_path / "state.toml").write_text("")
        daemon = app.service(config, dry_run=True, out=io.StringIO()).daemon
        try:
            with pytest.raises(ConfigError, match=r"intake\.http\.listen"):
                daemon.start()
            # The failed start undid itself: the data directory is free for the next one.
            lock = InstanceLock(tmp_path / "data" / "dry-run.lock")
            lock.acquire()
            lock.release()
        finally:
            daemon.shutdown()


def test_no_listener_without_an_http_intake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = InProcessDryRun(tmp_path, config_text().split("[intake.http]")[0])
    run.start()
    try:
        assert run.shell is not None and run.shell.http_address is None
        assert run.shell.inspect().ok
    finally:
        run.stop()


# -- concurrent events: committed together, answered each --------------------------------------


def _post_together(service: Service, events: list[dict[str, Any]]) -> list[Response]:
    """POST these events at once, from one thread each, while the committer is held, so
    they are all waiting together when it resumes; their answers, in the same order."""
    daemon = service.daemon
    assert daemon is not None and daemon._committer is not None
    committer = daemon._committer
    answers: list[Response | None] = [None] * len(events)

    def send(i: int) -> None:
        answers[i] = service.post(events[i])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(events))]
    with daemon._plan_lock:  # the committer takes what arrived first, then waits for it
        for t in threads:
            t.start()
        wait_for(lambda: committer.unanswered == len(events), "every event to wait", 10)
    for t in threads:
        t.join(30)
    assert all(a is not None for a in answers)
    return [a for a in answers if a is not None]


def test_concurrent_events_are_all_committed_and_planned_once(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon = service.daemon
    assert daemon is not None and daemon.app is not None
    plans = []
    plan = daemon.plan
    monkeypatch.setattr(daemon, "plan", lambda changed=None: (plans.append(1), plan(changed))[1])
    ids = [f"rack-{i}" for i in range(8)]
    answers = _post_together(service, [bilingual_opening(i) for i in ids])
    assert [a.status for a in answers] == [202] * 8
    assert [a.json()["id"] for a in answers] == ids
    # Acknowledged means committed: every incident is in the store already.
    assert all(daemon.app.store.snapshot(i) is not None for i in ids)
    wait_for(lambda: len(service.posts()) >= 16, "an opening per incident and channel", 10)
    assert plans == [1], "one plan for the eight events"


def test_a_bad_event_among_concurrent_good_ones_is_refused_alone(service: Service) -> None:
    events = [bilingual_opening(f"rack-{i}") for i in range(4)]
    events.insert(2, bilingual_opening("rack-bad", status="fixed"))
    answers = _post_together(service, events)
    assert [a.status for a in answers] == [202, 202, 422, 202, 202]
    (error,) = answers[2].json()["errors"]
    assert error["field"] == "status"
    assert "unknown status 'fixed'" in error["message"]
    app_ = service.daemon.app
    assert app_ is not None
    assert app_.store.snapshot("rack-bad") is None
    assert all(app_.store.snapshot(f"rack-{i}") is not None for i in range(4))


def test_an_event_committed_to_a_store_deleted_meanwhile_is_not_acknowledged(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store file is deleted while a group is being written: the commit lands on the
    orphaned file, which the next start will not see, so the sender gets a 503 (and sends
    it again), never a 202 for an event that would be forgotten."""
    app_ = service.daemon.app
    assert app_ is not None
    batch = app_.store.batch
    path = service.tmp / "data" / "dry-run.sqlite3"

    @contextmanager
    def deleted_during_the_batch() -> Iterator[None]:
        with batch():
            yield
            path.unlink()

    monkeypatch.setattr(app_.store, "batch", deleted_during_the_batch)
    answer = service.post(bilingual_opening("rack-1"))
    assert answer.status == 503
    assert "dry-run.sqlite3 was deleted" in answer.json()["errors"][0]["message"]


def test_no_event_is_acknowledged_before_its_commit(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store fails at commit, after the events were applied: each gets a 503, none is
    kept, and sent again once the store is back, each is accepted and posted."""
    app_ = service.daemon.app
    assert app_ is not None
    batch = app_.store.batch

    @contextmanager
    def failing_commit() -> Iterator[None]:
        with batch():
            yield
            raise StoreUnavailable("the database went away before the commit")

    monkeypatch.setattr(app_.store, "batch", failing_commit)
    events = [bilingual_opening(f"rack-{i}") for i in range(4)]
    answers = _post_together(service, events)
    assert [a.status for a in answers] == [503] * 4
    assert all(a.headers["Retry-After"] for a in answers)
    assert all(app_.store.snapshot(f"rack-{i}") is None for i in range(4))
    monkeypatch.setattr(app_.store, "batch", batch)  # the store is back
    answers = _post_together(service, events)
    assert [a.status for a in answers] == [202] * 4
    wait_for(lambda: len(service.posts()) >= 8, "every incident's opening", 10)
