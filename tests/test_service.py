"""The daemon as a systemd service: sd_notify, the watchdog, stops that lose nothing, secrets.

The daemon runs as `broadcaster run` in a subprocess where signals matter, and in-process
where a test must break it from the inside (a dead delivery worker). The notify socket is
a real AF_UNIX datagram socket bound by the test, as systemd's would be.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import MASTODON_FR, X_EN, InProcessDryRun, bilingual_opening, config_toml, wait_for

from broadcaster.notify import Notifier, Watchdog
from broadcaster.sandbox import DEFAULT_MASTODON_ACCOUNT, Faults, MastodonSandbox

TOKEN = "service-token-0f3a9b1c7e5d2468"
TOKEN_VAR = "BROADCASTER_TEST_INTAKE_TOKEN"
LISTENING = re.compile(r"HTTP intake listening on http://([\d.]+):(\d+)")


def config_text(channels: str = X_EN + MASTODON_FR) -> str:
    intake = f"""
[intake.http]
listen = "127.0.0.1:0"
token = "${{{TOKEN_VAR}}}"
"""
    return config_toml(channels, intake)


def request(
    address: tuple[str, int],
    method: str,
    path: str,
    body: Any = None,
    token: str | None = TOKEN,
) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection(*address, timeout=10)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers=headers)
        r = conn.getresponse()
        return r.status, str(r.headers), r.read()
    finally:
        conn.close()


class NotifySocket:
    """What systemd listens on: collects the daemon's datagrams."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address.replace("@", "\0", 1) if address.startswith("@") else address)
        self.address = address
        self.messages: list[dict[str, str]] = []

    def close(self) -> None:
        self.sock.close()

    def _receive(self, timeout: float) -> dict[str, str] | None:
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(4096)
        except TimeoutError:
            return None
        message = dict(line.split("=", 1) for line in data.decode().splitlines())
        self.messages.append(message)
        return message

    def wait(self, what: Callable[[dict[str, str]], bool], timeout: float, text: str) -> dict:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            message = self._receive(left)
            if message is not None and what(message):
                return message
        raise AssertionError(f"no {text} within {timeout}s; got {self.messages[-5:]}")

    def drain(self) -> list[dict[str, str]]:
        got = []
        while (message := self._receive(0.001)) is not None:
            got.append(message)
        return got

    def quiet_for(self, seconds: float, what: Callable[[dict[str, str]], bool]) -> list[dict]:
        """Everything that arrives within ``seconds``, asserting nothing matches ``what``."""
        deadline = time.monotonic() + seconds
        got = []
        while (left := deadline - time.monotonic()) > 0:
            message = self._receive(left)
            if message is not None:
                got.append(message)
                assert not what(message), message
        return got


class Process:
    def __init__(self, tmp: Path, env: dict[str, str], *, dry_run: bool = True) -> None:
        self.tmp = tmp
        self.env = {**os.environ, TOKEN_VAR: TOKEN, **env}
        self.dry_run = dry_run
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def start(self, *extra: str) -> None:
        self.runs += 1
        self.stdout = self.tmp / f"stdout.{self.runs}.log"
        self.stderr = self.tmp / f"stderr.{self.runs}.log"
        args = [sys.executable, "-m", "broadcaster", "run", "--config", "config.toml", *extra]
        if self.dry_run:
            args.append("--dry-run")
        with self.stdout.open("wb") as out, self.stderr.open("wb") as err:
            self.proc = subprocess.Popen(args, cwd=self.tmp, env=self.env, stdout=out, stderr=err)

    def address(self, timeout: float = 15) -> tuple[str, int]:
        def bound() -> tuple[str, int] | None:
            assert self.proc is not None and self.proc.poll() is None, self.stderr.read_text()
            m = LISTENING.search(self.stderr.read_text())
            return (m.group(1), int(m.group(2))) if m else None

        return wait_for(bound, "the HTTP listener", timeout)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=20)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def logs(self) -> str:
        return "".join(p.read_text() for p in sorted(self.tmp.glob("std*.log")))


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    # AF_UNIX paths are limited to 108 bytes; pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="bcast-") as d:
        yield Path(d)


# -- sd_notify -------------------------------------------------------------------------------


def test_systemd_sees_ready_watchdog_reloading_and_stopping(short_tmp: Path) -> None:
    (short_tmp / "config.toml").write_text(config_text())
    (short_tmp / "state.toml").write_text("")
    notify = NotifySocket(str(short_tmp / "notify.sock"))
    daemon = Process(
        short_tmp, {"NOTIFY_SOCKET": notify.address, "WATCHDOG_USEC": "100000"}
    )  # a ping every 50 ms
    daemon.start()
    try:
        ready = notify.wait(lambda m: m.get("READY") == "1", 15, "READY=1")
        assert "serving 2 channel(s)" in ready["STATUS"]
        # Ready means serving: the listener answers the moment systemd is told.
        assert request(daemon.address(timeout=1), "GET", "/healthz")[0] == 200
        notify.wait(lambda m: m.get("WATCHDOG") == "1", 2, "WATCHDOG=1")
        notify.wait(lambda m: m.get("WATCHDOG") == "1", 2, "a second WATCHDOG=1")

        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGHUP)
        reloading = notify.wait(lambda m: m.get("RELOADING") == "1", 5, "RELOADING=1")
        # systemd compares MONOTONIC_USEC with its own CLOCK_MONOTONIC reading.
        assert abs(int(reloading["MONOTONIC_USEC"]) / 1e6 - time.monotonic()) < 5
        notify.wait(lambda m: m.get("READY") == "1", 5, "READY=1 after the reload")

        assert daemon.stop() == 0
        notify.wait(lambda m: m.get("STOPPING") == "1", 1, "STOPPING=1")
    finally:
        daemon.kill()
        notify.close()


def test_the_watchdog_is_withheld_while_a_delivery_worker_is_dead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = f"@broadcaster-test-{uuid.uuid4().hex}"  # the abstract namespace, as systemd may
    notify = NotifySocket(address)
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    monkeypatch.setenv("WATCHDOG_USEC", "40000")  # a ping every 20 ms
    monkeypatch.setenv(TOKEN_VAR, TOKEN)
    run = InProcessDryRun(tmp_path, config_text())
    daemon = run.start()
    try:
        notify.wait(lambda m: m.get("READY") == "1", 5, "READY=1")
        notify.wait(lambda m: m.get("WATCHDOG") == "1", 2, "WATCHDOG=1")
        assert daemon.app is not None
        daemon.app.delivery.workers["mastodon-fr"].stop()
        # systemd's `status` line says why before the watchdog fires.
        notify.wait(lambda m: "mastodon-fr" in m.get("STATUS", ""), 2, "an unhealthy STATUS")
        notify.drain()
        notify.quiet_for(0.3, lambda m: m.get("WATCHDOG") == "1")  # 15 intervals, no ping
    finally:
        daemon.stop()
        run.stop()
    notify.wait(lambda m: m.get("STOPPING") == "1", 1, "STOPPING=1")
    notify.close()


def test_notifications_are_a_no_op_outside_systemd() -> None:
    notifier = Notifier({})
    assert not notifier.enabled and not notifier.ready() and not notifier.watchdog()
    assert Notifier({"WATCHDOG_USEC": "30000000"}).watchdog_interval == 15.0
    # The watchdog belongs to another process (a parent that passed its environment on).
    assert Notifier({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}).watchdog_interval is None
    assert not Watchdog(Notifier({}), lambda: (True, "ok"), 0.01).enabled
    # A socket that went away costs a warning, never an exception.
    assert not Notifier({"NOTIFY_SOCKET": "/nonexistent/notify.sock"}).ready("x")


# -- stops ---------------------------------------------------------------------------------


def test_sigterm_mid_delivery_loses_nothing_and_repeats_nothing(short_tmp: Path) -> None:
    """The platform took the post but had not answered when SIGTERM came; another post was
    waiting behind it. After a restart each is on the platform exactly once."""
    faults = Faults(seed=1)
    with MastodonSandbox(faults=faults) as sandbox:
        channels = f"""
[channels.mastodon-en]
platform = "mastodon"
language = "en"
api_base_url = "{sandbox.base_url}"
access_token = "${{MASTODON_TEST_TOKEN}}"
timeout = "1s"
"""
        (short_tmp / "config.toml").write_text(config_text(channels))
        (short_tmp / "state.toml").write_text("")
        daemon = Process(
            short_tmp,
            {"MASTODON_TEST_TOKEN": DEFAULT_MASTODON_ACCOUNT.access_token},
            dry_run=False,
        )
        # The post is created, then the answer never comes (until the client gives up).
        faults.hang_next(1, seconds=30, after_processing=True)
        daemon.start()
        try:
            address = daemon.address()
            assert request(address, "POST", "/v1/events", bilingual_opening())[0] == 202
            wait_for(lambda: len(sandbox.posts()) == 1, "the post to reach the platform", 5)
            update = {"id": "sbg-power", "status": "identified", "message": "Generator failed"}
            assert request(address, "POST", "/v1/events", update)[0] == 202
            assert daemon.stop() == 0  # SIGTERM while the first post's answer is pending

            daemon.start()
            address = daemon.address()

            def delivered() -> bool:
                status, _, body = request(address, "GET", "/healthz")
                channel = json.loads(body)["channels"]["mastodon-en"]
                return status == 200 and channel["sent"] == 2 and channel["undelivered"] == 0

            wait_for(delivered, "both posts to be confirmed after the restart", 10)
            assert daemon.stop() == 0
        finally:
            daemon.kill()
        posts = sandbox.posts()
    assert len(posts) == 2, [p.text for p in posts]
    first, second = posts
    assert "Power lost on both feeds" in first.text
    assert "Generator failed" in second.text
    assert second.in_reply_to == first.id, "the update still replies in the thread"
    assert "already published" in daemon.logs()


def test_the_intake_token_never_reaches_logs_or_answers(short_tmp: Path) -> None:
    (short_tmp / "config.toml").write_text(config_text())
    (short_tmp / "state.toml").write_text("")
    daemon = Process(short_tmp, {})
    daemon.start("--verbose")
    answers: list[bytes] = []
    try:
        address = daemon.address()
        for body, token in (
            (bilingual_opening(), None),
            (bilingual_opening(), TOKEN[:-1] + "0"),
            (bilingual_opening(), f"{TOKEN} {TOKEN}"),
            (bilingual_opening(status=TOKEN), TOKEN),  # refused, and the refusal quotes the value
            ({"id": TOKEN}, TOKEN),
            (bilingual_opening(), TOKEN),
        ):
            status, headers, answer = request(address, "POST", "/v1/events", body, token)
            answers += [headers.encode(), answer]
        assert status == 202
        for path in ("/healthz", "/metrics"):
            status, headers, answer = request(address, "GET", path)
            answers += [headers.encode(), answer]
        assert daemon.stop() == 0
    finally:
        daemon.kill()
    logs = daemon.logs()
    assert "event refused" in logs and "accepted" in logs, logs
    assert TOKEN not in logs
    for answer in answers:
        assert TOKEN.encode() not in answer
