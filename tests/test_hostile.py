"""Hostile and careless input at every door: each attack that once got through, kept."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support import bilingual_opening, opening, wait_for
from test_http import TOKEN, TOKEN_VAR, Service, config_text, running
from test_platforms import harness, servers  # noqa: F401  (fixtures)

from broadcaster.web import server as web_server

# -- HTTP: doors that cannot be held shut ------------------------------------------------------


@pytest.fixture
def quick_deadline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    """The intake with a 1 s whole-request deadline and 1 s keep-alive (10 s and 5 s in
    production)."""
    monkeypatch.setattr(web_server, "REQUEST_DEADLINE", 1.0)
    monkeypatch.setattr(web_server, "KEEP_ALIVE", 1.0)
    with running(tmp_path, monkeypatch) as s:
        yield s


def test_200_slow_clients_leave_healthz_and_a_valid_event_answered(
    quick_deadline: Service,
) -> None:
    service = quick_deadline
    slow: list[socket.socket] = []
    try:
        for i in range(200):
            s = socket.create_connection(service.address, timeout=5)
            if i % 2:  # stalls in its headers
                s.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\n")
            else:  # stalls in its body
                s.sendall(
                    b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                    + f"Authorization: Bearer {TOKEN}\r\n\r\n{{".encode()
                )
            slow.append(s)
        started = time.monotonic()
        assert service.request("GET", "/healthz").status == 200
        assert service.post(bilingual_opening()).status == 202
        # Answered while 200 clients hold connections (the old listener's limit was 64).
        assert time.monotonic() - started < 3
        # A drip of one byte a while does not extend the deadline: each is cut off with 408.
        for s in slow:
            s.sendall(b"x")
        for s in slow:
            s.settimeout(5)
            answer = b""
            while chunk := s.recv(4096):
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]
    finally:
        for s in slow:
            s.close()
    assert service.request("GET", "/healthz").status == 200


def kept_alive(service: Service) -> tuple[http.client.HTTPConnection, socket.socket]:
    """A connection that was answered once and kept open: (the client, its socket)."""
    conn = http.client.HTTPConnection(*service.address, timeout=5)
    conn.request("GET", "/healthz")
    r = conn.getresponse()
    assert r.status == 200 and r.read()
    assert conn.sock is not None, "closed after one answer"
    return conn, conn.sock


def until_closed(s: socket.socket) -> bytes:
    s.settimeout(5)
    answer = b""
    while chunk := s.recv(4096):
        answer += chunk
    return answer


def test_two_requests_on_one_connection_are_both_answered(quick_deadline: Service) -> None:
    conn, sock = kept_alive(quick_deadline)
    with contextlib.closing(conn):
        body = json.dumps(bilingual_opening()).encode()
        conn.request("POST", "/v1/events", body, {"Authorization": f"Bearer {TOKEN}"})
        r = conn.getresponse()
        assert r.status == 202 and r.read()
        assert conn.sock is sock, "the second request reconnected"
        # A refusal given before its body was read closes the connection, as it says.
        sock.sendall(
            b"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        answer = until_closed(sock)  # the server closes: this returns
        assert answer.startswith(b"HTTP/1.1 401 ") and b"\r\nconnection: close\r\n" in answer


def test_a_slow_second_request_on_a_kept_alive_connection_is_cut_off(
    quick_deadline: Service,
) -> None:
    conn, sock = kept_alive(quick_deadline)
    with contextlib.closing(conn):
        sock.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\n")
        assert quick_deadline.request("GET", "/healthz").status == 200
        sock.sendall(b"X-Drip: 1\r\n")  # a drip does not extend the deadline
        assert until_closed(sock).startswith(b"HTTP/1.1 408 ")
    assert quick_deadline.request("GET", "/healthz").status == 200


def test_an_idle_kept_alive_connection_is_closed(quick_deadline: Service) -> None:
    conn, sock = kept_alive(quick_deadline)
    with contextlib.closing(conn):
        started = time.monotonic()
        assert until_closed(sock) == b""  # closed without a word: no request had begun
        assert time.monotonic() - started < 4


def test_answers_on_a_kept_alive_connection_are_not_held_back_by_nagle() -> None:
    # Without TCP_NODELAY an answer's body waits for the client's delayed ACK of its head:
    # 40 ms per request once the connection is kept alive.
    async def ok(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    server = web_server.AsgiServer(ok, ("127.0.0.1", 0))
    server.start()
    try:
        conn = http.client.HTTPConnection(*server.bound_address, timeout=5)
        with contextlib.closing(conn):
            conn.request("GET", "/")
            assert conn.getresponse().read() == b"ok"
            (protocol,) = server._server.server_state.connections
            sock = protocol.transport.get_extra_info("socket")  # type: ignore[attr-defined]
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        server.close()


def raw_exchange(address: tuple[str, int], request: bytes) -> bytes:
    with socket.create_connection(address, timeout=5) as s:
        s.sendall(request)
        s.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"\x00\x01\x02 / HTTP/1.1\r\n\r\n",
        b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        b"GET /healthz HTTP/9.9\r\n\r\n",
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n",
    ],
    ids=["garbage", "binary", "non-ascii-path", "bad-header", "version", "two-lengths", "huge"],
)
def test_every_malformed_request_gets_an_http_answer(
    quick_deadline: Service, request_bytes: bytes
) -> None:
    answer = raw_exchange(quick_deadline.address, request_bytes)
    # A status line, not silence nor a body without one (an unknown version is served).
    assert re.match(rb"HTTP/1\.1 (4\d\d|200) ", answer), answer[:80]
    assert quick_deadline.request("GET", "/healthz").status == 200


def test_deeply_nested_json_is_400_not_silence(quick_deadline: Service) -> None:
    for depth in (40, 990, 5000, 100_000):
        raw = b'{"id": ' + b"[" * depth + b"]" * depth + b"}"
        r = quick_deadline.post(None, raw=raw)
        assert r.status in (400, 413), depth
    r = quick_deadline.post(None, raw=b'{"id": "a", "message": "' + b"[" * 3000 + b'"}')
    assert r.status != 500


def test_a_lone_surrogate_is_refused_not_accepted_then_never_posted(
    quick_deadline: Service,
) -> None:
    raw = json.dumps(bilingual_opening(message="cut emoji \ud83d")).encode()
    r = quick_deadline.post(None, raw=raw)
    assert r.status == 400 and "surrogate" in r.json()["errors"][0]["message"]
    assert quick_deadline.daemon is not None and quick_deadline.daemon.app is not None
    assert quick_deadline.daemon.app.store.snapshot("sbg-power") is None


# -- queues: one poisonous entry blocks nothing ------------------------------------------------

DEEP = '{"id": "sbg-power", "message": ' + "[" * 5000 + "]" * 5000 + "}"


def test_a_poisonous_spool_file_is_rejected_alone_and_the_rest_applied_in_order(
    tmp_path: Path,
) -> None:
    from test_spool import Harness as SpoolHarness

    spool = SpoolHarness(tmp_path)
    try:
        spool.drop("0001.json", DEEP)
        spool.drop("0002.json", opening())
        spool.drop("0003.json", '{"id": "sbg-power", "message": "\\ud800 cut"}')
        spool.drop("0004.json", {"id": "sbg-power", "status": "identified"})
        spool.start()
        wait_for(lambda: spool.names(spool.done) == ["0002.json", "0004.json"], "both applied")
        assert spool.names(spool.rejected) == [
            "0001.json",
            "0001.json.error",
            "0003.json",
            "0003.json.error",
        ]
        assert "nested deeper" in (spool.rejected / "0001.json.error").read_text()
        assert "surrogate" in (spool.rejected / "0003.json.error").read_text()
        assert spool.daemon is not None and spool.daemon.app is not None
        snapshot = spool.daemon.app.store.snapshot("sbg-power")
        assert snapshot is not None and snapshot.incident.status == "identified"
    finally:
        spool.stop()


def test_an_entry_that_fails_to_apply_is_rejected_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever an entry triggers once decoded (here a fault injected in the merge) rejects
    that entry, not the queue behind it."""
    from test_spool import Harness as SpoolHarness

    from broadcaster import daemon as daemon_module

    real_merge = daemon_module.merge

    def merge(store, event, **kwargs):  # type: ignore[no-untyped-def]
        if event.get("message") == "poison":
            raise OverflowError("date value out of range")
        return real_merge(store, event, **kwargs)

    monkeypatch.setattr(daemon_module, "merge", merge)
    spool = SpoolHarness(tmp_path)
    try:
        spool.drop("0001.json", opening())
        spool.drop("0002.json", {"id": "sbg-power", "message": "poison"})
        spool.drop("0003.json", {"id": "sbg-power", "status": "identified"})
        spool.start()
        wait_for(lambda: spool.names(spool.done) == ["0001.json", "0003.json"], "others applied")
        assert spool.names(spool.rejected) == ["0002.json", "0002.json.error"]
        assert "OverflowError" in (spool.rejected / "0002.json.error").read_text()
    finally:
        spool.stop()


def test_a_poisonous_redis_entry_is_dead_lettered_alone(tmp_path: Path) -> None:
    from redis_server import RedisServer
    from test_redis import DEAD
    from test_redis import Harness as RedisHarness

    server = RedisServer(tmp_path / "redis")
    server.start()
    queue = RedisHarness(tmp_path, server)
    try:
        bad = queue.push(DEEP)
        queue.push(opening())
        surrogate = queue.push('{"id": "sbg-power", "message": "\\udfff"}')
        queue.push({"id": "sbg-power", "status": "identified"})
        queue.start()
        wait_for(lambda: queue.redis.xlen(DEAD) == 2, "two dead letters")
        dead = {fields[b"id"]: fields for _, fields in queue.redis.xrange(DEAD)}
        assert set(dead) == {bad, surrogate}
        assert b"nested deeper" in dead[bad][b"error"]
        wait_for(lambda: queue.pending() == 0, "every entry settled")
        wait_for(
            lambda: (
                queue.snapshot() is not None and queue.snapshot().incident.status == "identified"
            ),
            "the valid entries applied, in order",
        )
    finally:
        queue.stop()
        queue.redis.close()
        server.stop(kill=True)


# -- secrets: never echoed, whatever key they were put in --------------------------------------

SECRET = "tok'en\"with\\back-8f3a2c91"


def _forms(secret: str) -> list[str]:
    return [secret, repr(secret)[1:-1], json.dumps(secret)[1:-1]]


def test_a_secret_in_the_wrong_key_is_never_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    from support import ROOT

    from broadcaster.cli import main

    shutil.copytree(ROOT / "message_templates", tmp_path / "message_templates")
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    text = (ROOT / "config.example.toml").read_text()
    text = text.replace(
        'api_base_url = "https://mastodon.example"', 'api_base_url = "${MASTODON_EN_TOKEN}"', 1
    )
    assert 'api_base_url = "${MASTODON_EN_TOKEN}"' in text
    config = tmp_path / "config.toml"
    config.write_text(text)
    monkeypatch.setenv("MASTODON_EN_TOKEN", SECRET)
    for argv in (
        ["check"],
        ["check", "--format", "json"],
        ["status"],
        ["run", "--dry-run"],
        ["run", "--dry-run", "--log-format", "json"],
    ):
        code = main([*argv, "--config", str(config)])
        out, err = capsys.readouterr()
        assert code == 2, argv
        assert "api_base_url" in out + err, argv
        for form in _forms(SECRET):
            assert form not in out + err, (argv, out, err)


def test_json_logs_redact_before_escaping() -> None:
    import logging

    from broadcaster import logs

    logs.register_secret(SECRET)
    record = logging.LogRecord("t", logging.ERROR, __file__, 1, "token is %s", (SECRET,), None)
    line = logs._Json().format(record)
    assert json.loads(line)["message"] == "token is ***"
    for form in _forms(SECRET):
        assert form not in line


# -- the state file: a regular file of bounded size only --------------------------------------


def test_a_fifo_device_or_huge_state_file_is_refused_and_the_last_good_state_kept(
    tmp_path: Path,
) -> None:
    import os

    from support import X_EN_WITHOUT_SECRETS, InProcessDryRun, config_toml

    run = InProcessDryRun(
        tmp_path,
        config_toml(
            X_EN_WITHOUT_SECRETS,
            "",
            poll_interval="50ms",
        ).replace('poll_interval = "50ms"', 'poll_interval = "50ms"\nstate_file_max_bytes = 4096'),
    )
    state = tmp_path / "state.toml"
    good = (
        '[[incidents]]\nid = "sbg-power"\ntitle = "Power outage"\nstatus = "investigating"\n'
        'severity = "critical"\nservices = ["VPS"]\n'
        f'started_at = "{(datetime.now(UTC) - timedelta(minutes=5)).isoformat()}"\n'
    )
    daemon = run.start()
    state.write_text(good)
    run.wait_posts(1)
    assert daemon.app is not None
    (source,) = [s for s in daemon.app.sources if s.name == "file"]
    try:
        attacks = {
            "a FIFO": lambda: os.mkfifo(state),
            "a character device": lambda: state.symlink_to("/dev/zero"),
            "over the limit of 4096": lambda: state.write_text(good + "#" * 5000),
        }
        for expected, attack in attacks.items():
            state.unlink()
            attack()
            wait_for(lambda e=expected: e in (source.last_error or ""), expected)
            snapshot = daemon.app.store.snapshot("sbg-power")
            assert snapshot is not None and snapshot.incident.status == "investigating"
        started = time.monotonic()
    finally:
        run.stop()
    assert time.monotonic() - started < 5, "the poll thread never blocked the shutdown"


def test_a_state_file_setting_that_is_not_a_string_is_a_config_error(tmp_path: Path) -> None:
    from support import X_EN, config_toml

    from broadcaster.config import ConfigError, load_config

    config = tmp_path / "config.toml"
    config.write_text(config_toml(X_EN).replace('state_file = "state.toml"', "state_file = 3"))
    with pytest.raises(ConfigError, match=r"state_file: expected a path"):
        load_config(config)


# -- operator experience: one-line errors, never a traceback ----------------------------------


def test_check_lists_every_unset_credential_at_once_unless_dry_run(
    site: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from broadcaster.cli import main

    for name in ("X_CONSUMER_KEY", "X_ACCESS_TOKEN", "MASTODON_EN_TOKEN", "MASTODON_FR_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    config = str(site / "config.toml")
    assert main(["check", "--config", config]) == 2
    err = capsys.readouterr().err
    for key in (
        "channels.x-en.consumer_key: ${X_CONSUMER_KEY} is not set",
        "channels.x-en.access_token: ${X_ACCESS_TOKEN} is not set",
        "channels.mastodon-en.access_token: ${MASTODON_EN_TOKEN} is not set",
        "channels.mastodon-fr.access_token: ${MASTODON_FR_TOKEN} is not set",
    ):
        assert key in err, err
    assert "--dry-run" in err
    assert main(["check", "--dry-run", "--config", config]) == 0
    capsys.readouterr()


def test_check_refuses_a_data_dir_that_is_a_file(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from broadcaster.cli import main

    (site / "data").write_text("not a directory")
    assert main(["check", "--dry-run", "--config", str(site / "config.toml")]) == 2
    assert "broadcaster.data_dir" in capsys.readouterr().err


def _cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "broadcaster", *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
    )


def test_user_mistakes_and_os_errors_are_one_line_errors(site: Path) -> None:
    config = str(site / "config.toml")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        busy = _cli("sandbox", "--x-port", port, "--mastodon-port", "0", cwd=site)
    unreadable = _cli("check", "--config", str(site / "nope.toml"), cwd=site)
    (site / "data").write_text("a file")
    bad_data_dir = _cli("run", "--dry-run", "--config", config, cwd=site)
    for result in (busy, unreadable, bad_data_dir):
        assert result.returncode == 2, result
        assert "Traceback" not in result.stderr, result.stderr
        assert result.stderr.startswith("error: ") or ": " in result.stderr, result.stderr
    assert "in use" in busy.stderr
    version = _cli("--version", cwd=site)
    assert version.returncode == 0 and version.stdout.startswith("broadcaster ")


def test_a_closed_pipe_is_a_one_line_error(site: Path) -> None:
    command = (
        f"{sys.executable} -m broadcaster simulate --hours 48 --format json "
        f"--config {site / 'config.toml'} | head -c 10 > /dev/null"
    )
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        cwd=site,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
    )
    assert "Traceback" not in result.stderr, result.stderr
    assert "broken pipe" in result.stderr


def test_config_example_documents_every_key_the_loader_accepts() -> None:
    from support import ROOT

    from broadcaster import config

    text = (ROOT / "config.example.toml").read_text()
    keys = [
        *config.BROADCASTER_KEYS,
        *config.CHANNEL_KEYS,
        *config.CADENCE_KEYS,
        *(key for keys in config.INTAKE_KEYS.values() for key in keys),
    ]
    undocumented = [k for k in keys if not re.search(rf"^#?\s*{re.escape(k)}\s*=", text, re.M)]
    assert undocumented == []
    for table in config.INTAKE_KEYS:
        assert re.search(rf"^#?\s*\[intake\.{table}\]", text, re.M), table


def test_a_license_file_matches_the_declared_license() -> None:
    from support import ROOT

    assert 'license = { text = "Apache-2.0" }' in (ROOT / "pyproject.toml").read_text()
    assert "Apache License" in (ROOT / "LICENSE").read_text()


def test_each_post_sent_is_logged_with_its_link(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from support import X_EN_WITHOUT_SECRETS, InProcessDryRun, config_toml

    caplog.set_level(logging.INFO, logger="broadcaster.delivery")
    run = InProcessDryRun(tmp_path, config_toml(X_EN_WITHOUT_SECRETS, poll_interval="50ms"))
    run.start()
    try:
        state = tmp_path / "state.toml"
        state.write_text(
            '[[incidents]]\nid = "sbg-power"\ntitle = "Power outage"\nstatus = "investigating"\n'
            'severity = "critical"\nservices = ["VPS"]\n'
            f'started_at = "{(datetime.now(UTC) - timedelta(minutes=5)).isoformat()}"\n'
        )
        run.wait_posts(1)
        wait_for(lambda: any("x-en: sent" in r.getMessage() for r in caplog.records), "a sent line")
    finally:
        run.stop()
    (line,) = [r.getMessage() for r in caplog.records if "x-en: sent" in r.getMessage()]
    # The platform's link when it gives one (X, Mastodon); a dry run has only an id.
    assert "sbg-power" in line and ("http" in line or ": id " in line)


# -- an incident that still cannot be planned: isolated, reported once, visible ----------------


def test_an_unplannable_incident_is_isolated_reported_once_and_visible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from test_http import metric

    from broadcaster.editor import Editor

    real_compose = Editor.compose

    def compose(self, snapshot, post):  # type: ignore[no-untyped-def]
        if snapshot.incident.id == "rbx-network":
            raise OverflowError("date value out of range")
        return real_compose(self, snapshot, post)

    monkeypatch.setattr(Editor, "compose", compose)
    monkeypatch.setenv(TOKEN_VAR, TOKEN)
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    caplog.set_level(logging.ERROR, logger="broadcaster.editor")
    service = Service(tmp_path, config_text())
    daemon = service.start()
    try:
        assert service.post(bilingual_opening("rbx-network")).status == 202
        assert service.post(bilingual_opening()).status == 202
        wait_for(lambda: len(service.posts()) >= 2, "the other incident posted")
        for _ in range(5):
            daemon.plan()
        health = service.request("GET", "/healthz")
        assert health.status == 200, "a restart would not fix it: degraded, not unhealthy"
        body = health.json()
        assert body["status"] == "degraded"
        assert set(body["unplannable"]) == {"rbx-network on x-en", "rbx-network on mastodon-fr"}
        assert metric(service.metrics(), "broadcaster_threads_unplannable") == 2
        logged = [r for r in caplog.records if "cannot record" in r.getMessage()]
        assert len(logged) == 2, "once per channel and revision, not at every plan"
        assert {p["incident_id"] for p in service.posts()} == {"sbg-power"}
    finally:
        daemon.stop()
        service.stop()


# -- X's per-app 24-hour cap -------------------------------------------------------------------


def test_x_app_cap_pauses_the_channel_until_its_reset(servers, harness) -> None:  # noqa: F811
    from test_platforms import X_EN, Account, check_threads, incident

    from broadcaster.sandbox import XSandbox

    # Several channels share one app: its cap, not the account's, is what runs out.
    x = Account("x-en", servers(XSandbox, [X_EN], app_daily_post_limit=2), X_EN)
    h = harness([x])
    h.publish(*(incident(f"incident-{n}") for n in range(3)))
    wait_for(lambda: len(x.server.posts()) == 2, "two posts within the app's cap")
    state = wait_for(
        lambda: (s := h.store.channel_state("x-en")).paused_until is not None and s,
        "the channel paused",
    )
    left = state.paused_until - datetime.now(UTC)
    assert timedelta(hours=23) < left <= timedelta(hours=24, seconds=5), left
    posting = [r for r in x.server.requests_log() if r.method == "POST"]
    assert all(r.status == 201 for r in posting), "no request spent against a spent cap"
    assert len(check_threads(h.store, x)) == 2, "the third waits for the reset"


def test_a_deeply_nested_state_file_is_a_clear_error(tmp_path: Path) -> None:
    from broadcaster.statefile import StateFileError, load_state

    for name, text in (
        ("state.json", '{"incidents": [{"id": "a", "message": ' + "[" * 50 + "]" * 50 + "}]}"),
        ("state.toml", '[[incidents]]\nid = "a"\nmessage = ' + "[" * 50 + "]" * 50 + "\n"),
        ("deep.toml", "x = " + "[" * 5000 + "]" * 5000 + "\n"),
    ):
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(StateFileError, match="nested"):
            load_state(path)


# -- a bounded fuzzer at the HTTP door -----------------------------------------------------------


def test_fuzzed_requests_always_get_an_http_answer(quick_deadline: Service) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    address = quick_deadline.address
    header = st.tuples(
        st.sampled_from(["Content-Length", "Authorization", "Transfer-Encoding", "X-Any", "Host"]),
        st.one_of(st.text(max_size=20), st.just(f"Bearer {TOKEN}"), st.integers(-5, 99).map(str)),
    )
    requests = st.builds(
        lambda method, path, version, headers, body: (
            f"{method} {path} {version}\r\n".encode("utf-8", "surrogatepass")
            + b"".join(f"{k}: {v}\r\n".encode("utf-8", "surrogatepass") for k, v in headers)
            + b"\r\n"
            + body
        ),
        st.sampled_from(["GET", "POST", "PUT", "BREW", "", "G\x00T"]),
        st.sampled_from(["/v1/events", "/healthz", "/metrics", "/", "*", "/%ff", "x"]),
        st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2", ""]),
        st.lists(header, max_size=4),
        st.one_of(st.binary(max_size=64), st.just(json.dumps(opening()).encode())),
    )

    @settings(
        max_examples=60,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(request=requests)
    def answered(request: bytes) -> None:
        answer = raw_exchange(address, request)
        assert re.match(rb"HTTP/1\.[01] \d{3} ", answer), (request, answer[:80])

    answered()
    assert quick_deadline.request("GET", "/healthz").status == 200


@pytest.mark.parametrize(
    ("name", "says"),
    [("dry-run.sqlite3", "dry-run.sqlite3 was deleted"), ("dry-run.lock", "lock file")],
)
def test_a_deleted_store_or_lock_file_halts_the_daemon_until_restarted(
    quick_deadline: Service, caplog: pytest.LogCaptureFixture, name: str, says: str
) -> None:
    import logging

    service = quick_deadline
    daemon = service.daemon
    assert daemon is not None and daemon.app is not None and service.shell is not None
    caplog.set_level(logging.ERROR, logger="broadcaster.daemon")
    assert service.post(bilingual_opening()).status == 202
    service.wait_posts(2)
    (service.tmp / "data" / name).unlink()

    r = service.request("GET", "/healthz")
    assert r.status == 503
    assert r.json()["halted"] is True
    assert says in r.json()["reasons"][0] and "restart" in r.json()["reasons"][0]
    refused = service.post(bilingual_opening("rbx-network"))
    assert refused.status == 503 and says in refused.json()["errors"][0]["message"]
    (service.tmp / "state.toml").write_text(
        '[[incidents]]\nid = "gra-dns"\ntitle = "DNS"\nstatus = "investigating"\n'
        "started_at = 2026-01-01T00:00:00Z\n"
    )
    workers = daemon.app.delivery.workers.values()
    wait_for(lambda: not any(w.is_alive() for w in workers), "delivery stopped")
    daemon.poll_sources()
    daemon.plan()
    assert daemon.reload() is False, "a reload would open a fresh store"
    assert {p["incident_id"] for p in service.posts()} == {"sbg-power"}, "nothing more"
    assert len(service.posts()) == 2
    assert daemon.app.store.snapshot("gra-dns") is None, "the state file is not read"
    assert service.request("GET", "/healthz").status == 503
    halted = [r for r in caplog.records if "refusing to continue blind" in r.getMessage()]
    assert len(halted) == 1, "logged once"
    fed, summary = service.shell._watchdog_check()
    assert fed and says in summary, "not restarted by the watchdog onto a fresh store"


# -- /healthz without a token names no internal host --------------------------------------------


def test_healthz_without_the_token_hides_hosts_addresses_and_ports(
    quick_deadline: Service, capsys: pytest.CaptureFixture[str]
) -> None:
    from broadcaster.cli import main
    from broadcaster.health import hide_hosts
    from broadcaster.store import ChannelChange

    service = quick_deadline
    assert service.daemon is not None and service.daemon.app is not None
    error = (
        "network error: HTTPSConnectionPool(host='x-proxy.corp.internal', port=8443): "
        'connection to server at "10.20.30.40", port 5432 failed; see http://[fd00::7]:9000/x'
    )
    store = service.daemon.app.store
    store.update_channel("x-en", ChannelChange(last_error=error), datetime.now(UTC))
    shown = service.request("GET", "/healthz").json()["channels"]["x-en"]["last_error"]
    for internal in ("x-proxy.corp.internal", "8443", "10.20.30.40", "5432", "fd00::7", "9000"):
        assert internal not in shown, (internal, shown)
    assert shown.startswith("network error: HTTPSConnectionPool(host='<host>', port=<port>)")
    authenticated = service.request(
        "GET", "/healthz", headers={"Authorization": f"Bearer {TOKEN}"}
    ).json()
    assert authenticated["channels"]["x-en"]["last_error"] == error, "in full with the token"
    # Times, paths and file names read as before.
    kept = "rate limited until 10:30:00; /var/lib/broadcaster/broadcaster.sqlite3, state.toml:12"
    assert hide_hosts(kept) == kept
    # ``status`` keeps the full text.
    code = main(["status", "--dry-run", "--config", str(service.config), "--format", "json"])
    assert code == 0 and "x-proxy.corp.internal" in capsys.readouterr().out


def test_a_passing_stat_error_does_not_halt_the_daemon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a store or lock file that is gone halts the daemon for good; a stat that fails
    for another reason (EACCES, ESTALE on NFS) says nothing about the file and is asked
    again at the next look."""
    from broadcaster.instancelock import InstanceLock
    from broadcaster.store import Store

    store = Store(str(tmp_path / "store.sqlite3"))
    lock = InstanceLock(tmp_path / "broadcaster.lock")
    lock.acquire()
    real_stat = os.stat

    def failing(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        if str(path).startswith(str(tmp_path)):
            raise OSError(116, "Stale file handle")
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", failing)
    assert store.lost() is None and lock.intact()
    monkeypatch.setattr(os, "stat", real_stat)
    (tmp_path / "broadcaster.lock").unlink()
    (tmp_path / "store.sqlite3").unlink()
    assert not lock.intact() and "was deleted" in (store.lost() or "")
    lock.release()
    store.close()
