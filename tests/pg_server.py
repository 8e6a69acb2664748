"""A real PostgreSQL for tests: ``initdb`` + ``pg_ctl`` in a temporary directory, loopback, a
free port, one session for the whole test run (a fresh database per test costs ~20 ms).

PostgreSQL refuses to run as root: when the tests do, the server runs as the ``postgres``
user (Debian's package creates it) and owns its data directory. Without the binaries
(Debian: ``apt-get install postgresql``) the tests that need it skip, saying so; with the
environment variable CI set they fail instead: CI must run them.

It can be stopped and started again on the same port with the same data (``restart``), or
killed (``stop(mode="immediate")``): PostgreSQL recovers from its WAL as in production.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

BIN_DIRS = [Path(p) for p in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)]
BIN = next((d for d in BIN_DIRS if (d / "pg_ctl").exists() and (d / "initdb").exists()), None)
USER = "broadcaster"
PASSWORD = "s3cret-pg"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def missing(reason: str) -> None:
    """Skip, or fail under CI: a silent skip there would hide a broken backend."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


class PostgresServer:
    def __init__(self) -> None:
        if BIN is None:
            missing("PostgreSQL is not installed (Debian: apt-get install postgresql)")
        assert BIN is not None
        self.bin = BIN
        # Not under pytest's tmp_path: its parents are private to root, and the server may
        # run as another user.
        self.directory = Path(tempfile.mkdtemp(prefix="broadcaster-pg-"))
        self.data = self.directory / "data"
        self.port = free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                missing("running as root and there is no 'postgres' user to run PostgreSQL")
            os.chown(self.directory, owner.pw_uid, owner.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self._names = itertools.count(1)

    def _run(self, *args: str, timeout: float = 60) -> None:
        result = subprocess.run(
            [*self._as, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {result.stdout}{result.stderr}{self.log()}")

    def init(self) -> None:
        pwfile = self.directory / "pw"
        pwfile.write_text(PASSWORD)
        if self._as:
            shutil.chown(pwfile, "postgres")
        self._run(
            str(self.bin / "initdb"),
            "-D", str(self.data),
            "-U", USER,
            "--pwfile", str(pwfile),
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
            "--encoding=UTF8",
            "--no-sync",
        )  # fmt: skip
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.directory}'\n"
                # Durable commits as in production; fsync off only spares the test machine's
                # disk (it matters for a power cut, which no test makes).
                "fsync = off\nfull_page_writes = off\nmax_connections = 200\n"
            )

    def start(self) -> None:
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log_path),
            "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """``fast`` (a clean shutdown) or ``immediate`` (as if killed: recovery at start)."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    @property
    def log_path(self) -> Path:
        return self.directory / "postgres.log"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh database on the session's server."""
    # wait: a test that restarted the server leaves it up, but make sure
    deadline = time.monotonic() + 30
    while True:
        try:
            return postgres_server.new_database()
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
