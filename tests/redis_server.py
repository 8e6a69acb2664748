"""A real ``redis-server`` for tests: loopback, a free port, its own data directory.

It can be stopped and started again on the same port with the same data, as a restart in
production would: ``appendonly yes`` with ``appendfsync always`` keeps streams and consumer
groups across a stop, even a ``kill -9``; RDB snapshots are off (``--save ''``).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis

BINARY = shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    def __init__(
        self, directory: Path, port: int | None = None, *, appendfsync: str = "always"
    ) -> None:
        if BINARY is None:
            pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        # "always" survives kill -9 with every write; "everysec" (Redis's default) for benchmarks.
        self.appendfsync = appendfsync
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10) -> None:
        assert self.proc is None, "already running"
        assert BINARY is not None
        log = (self.directory / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            [
                BINARY,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.directory),
                "--save", "",
                "--appendonly", "yes",
                "--appendfsync", self.appendfsync,
                "--daemonize", "no",
                "--logfile", "",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited: {self.log()}")
                try:
                    if client.ping():
                        return  # PING succeeds only once the AOF is loaded
                except redis.RedisError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start: {self.log()}")
                time.sleep(0.01)
        finally:
            client.close()

    def stop(self, *, kill: bool = False, timeout: float = 10) -> None:
        """SIGTERM (a clean shutdown) or SIGKILL; either way the AOF keeps every write."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        self.proc.wait(timeout=timeout)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def log(self) -> str:
        path = self.directory / "redis.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""
