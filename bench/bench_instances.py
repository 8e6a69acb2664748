"""Several instances on PostgreSQL: takeover time and delivery throughput, against SQLite.

A real PostgreSQL (Debian's, started as the tests start it: ``tests/pg_server.py``) and the
X and Mastodon sandboxes in a child process; everything on loopback.

(a) **Takeover**: two ``broadcaster run`` daemons on one database, reminders due every
    second; the holder of ``x-en`` is killed with SIGKILL; the figure is the time from the
    kill to the first post on ``x-en`` by the other instance, for each ``lease_ttl``
    (ratio: takeover / lease_ttl; the floor is the TTL itself). Baseline in the same run: one
    daemon on SQLite, killed and restarted at once (what systemd's ``Restart=always`` does),
    kill → first post after the restart.
(b) **Throughput**: 4 channels (2 X, 2 Mastodon accounts), ``--incidents`` openings each,
    delivered by the daemon's own pipeline (``app.build``, one worker per channel) with
    one instance, then two instances on PostgreSQL; baseline: one instance on SQLite (WAL,
    synchronous=FULL), same posts, same run. Posts per second; ratio PostgreSQL / SQLite.

    .venv/bin/python bench/bench_instances.py            # ~60 s
    .venv/bin/python bench/bench_instances.py --quick    # ~20 s (PostgreSQL start included)
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchlib import (
    ROOT,
    Figure,
    Result,
    Sandboxes,
    SandboxSpec,
    child_env,
    config_header,
    finish,
    mastodon_account,
    mastodon_channel_toml,
    median,
    parser,
    ratio,
    x_account,
    x_channel_toml,
)

sys.path.insert(0, str(ROOT / "tests"))

import psycopg
from pg_server import PostgresServer

from broadcaster.app import App, build
from broadcaster.config import load_config
from broadcaster.model import Incident, Localized, OutboxPost

STATE = """
[[incidents]]
id = "{id}"
title = {{ en = "Outage of {id}", fr = "Panne de {id}" }}
status = "investigating"
severity = "critical"
services = ["VPS"]
regions = ["SBG"]
started_at = {started}
message = {{ en = "We are restoring {id}.", fr = "Nous rétablissons {id}." }}
"""


def channels_toml(sandboxes: Sandboxes, n: int) -> str:
    text = ""
    specs = [("x-en", "x", "en", 0), ("mastodon-fr", "mastodon", "fr", 0)]
    specs += [("x-fr", "x", "fr", 1), ("mastodon-en", "mastodon", "en", 1)]
    for name, platform, language, account in specs[:n]:
        if platform == "x":
            text += x_channel_toml(name, language, sandboxes.x_url, x_account(account))
        else:
            text += mastodon_channel_toml(
                name, language, sandboxes.mastodon_url, mastodon_account(account)
            )
    return text


def store_toml(url: str | None, name: str, ttl: float) -> str:
    if url is None:
        return ""
    return f'\n[store]\nurl = "{url}"\nlease_ttl = "{ttl}s"\ninstance = "{name}"\n'


# -- (a) takeover ------------------------------------------------------------------------------


class Daemon:
    def __init__(self, home: Path, config_text: str) -> None:
        home.mkdir(parents=True)
        self.home = home
        self.config = home / "config.toml"
        self.config.write_text(config_text)
        started = datetime.now(UTC).replace(microsecond=0).isoformat()
        (home / "state.toml").write_text(
            "".join(STATE.format(id=f"inc-{i}", started=started) for i in range(3))
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.home / "daemon.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "broadcaster", "run", "--config", str(self.config)],
            cwd=self.home,
            stdout=log,
            stderr=log,
            env=child_env(),
        )
        log.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


def wait(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.01)
    raise TimeoutError(what)


def pg_rows(url: str, query: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    try:
        with psycopg.connect(url) as conn:
            return conn.execute(query.encode(), args).fetchall()
    except psycopg.errors.UndefinedTable:  # the daemons have not migrated it yet
        return []


def sqlite_rows(path: Path, query: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    import sqlite3

    if not path.exists():
        return []
    db = sqlite3.connect(path, timeout=5)
    try:
        return db.execute(query, args).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


def first_sent_after(rows: list[tuple[Any, ...]], after: datetime) -> datetime | None:
    times = [t if isinstance(t, datetime) else datetime.fromisoformat(t) for (t,) in rows]
    later = [t for t in times if t > after]
    return min(later) if later else None


def takeover_pg(workdir: Path, sandboxes: Sandboxes, url: str, ttl: float) -> float:
    header = config_header(poll_interval="100ms", cadence="1s") + channels_toml(sandboxes, 1)
    daemons = {
        name: Daemon(workdir / f"ttl{ttl}-{name}", header + store_toml(url, name, ttl))
        for name in ("a", "b")
    }
    try:
        for d in daemons.values():
            d.start()
        query = "SELECT sent_at FROM posts WHERE channel = 'x-en' AND state = 'sent'"
        wait(lambda: len(pg_rows(url, query)) >= 3, 60, "posts flowing")
        # "a#3f2c1e": the instance's name, then its process's own tag
        holder = pg_rows(url, "SELECT holder FROM leases WHERE channel = 'x-en'")[0][0]
        holder = holder.split("#")[0]
        killed_at = datetime.now(UTC)
        daemons[holder].kill()
        first = wait(
            lambda: first_sent_after(pg_rows(url, query), killed_at), 60, "a post after the kill"
        )
        new = pg_rows(url, "SELECT holder FROM leases WHERE channel = 'x-en'")[0][0]
        assert new.split("#")[0] != holder, "the killed instance still holds the channel"
        return float((first - killed_at).total_seconds())
    finally:
        for d in daemons.values():
            d.kill()


def restart_sqlite(workdir: Path, sandboxes: Sandboxes, n: int) -> float:
    header = config_header(poll_interval="100ms", cadence="1s") + channels_toml(sandboxes, 1)
    daemon = Daemon(workdir / f"sqlite-{n}", header)
    store = daemon.home / "data" / "broadcaster.sqlite3"
    query = "SELECT sent_at FROM posts WHERE channel = 'x-en' AND state = 'sent'"
    try:
        daemon.start()
        wait(lambda: len(sqlite_rows(store, query)) >= 3, 60, "posts flowing")
        killed_at = datetime.now(UTC)
        daemon.kill()
        daemon.start()  # at once, as systemd's Restart=always would
        first = wait(
            lambda: first_sent_after(sqlite_rows(store, query), killed_at), 60, "post after"
        )
        return float((first - killed_at).total_seconds())
    except TimeoutError:
        print((daemon.home / "daemon.log").read_text()[-3000:])
        raise
    finally:
        daemon.kill()


def part_takeover(
    result: Result, sandboxes: Sandboxes, server: PostgresServer, workdir: Path, ttls: list[float]
) -> None:
    restarts = [restart_sqlite(workdir, sandboxes, i) for i in range(2)]
    base = median(restarts)
    result.details["sqlite_restart_s"] = [round(x, 3) for x in restarts]
    for ttl in ttls:
        takeover = takeover_pg(workdir, sandboxes, server.new_database(), ttl)
        result.details[f"takeover_ttl_{ttl:g}s"] = round(takeover, 3)
        result.add(
            Figure(
                f"takeover, lease_ttl {ttl:g}s (vs the TTL)",
                ratio(takeover, ttl),
                None,
                takeover,
                ttl,
                "s",
                "kill -9 → first post by the other instance",
            )
        )
        result.add(
            Figure(
                f"takeover, lease_ttl {ttl:g}s (vs SQLite restart)",
                ratio(takeover, base),
                None,
                takeover,
                base,
                "s",
                "baseline: the same daemon on SQLite killed and restarted at once",
            )
        )


# -- (b) throughput ----------------------------------------------------------------------------


class Instances:
    """One or more apps (the daemon's pipeline) on one store, counting confirmed posts."""

    def __init__(self, workdir: Path, sandboxes: Sandboxes, url: str | None, count: int) -> None:
        self.apps: list[App] = []
        self._sent = 0
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._target = 0
        for i in range(count):
            home = workdir / f"i{i}"
            home.mkdir(parents=True)
            (home / "state.toml").write_text("")
            path = home / "config.toml"
            path.write_text(
                config_header() + channels_toml(sandboxes, 4) + store_toml(url, f"i{i}", 15)
            )
            app = build(load_config(path), dry_run=False)
            for worker in app.delivery.workers.values():
                worker.on_sent = self._on_sent
            self.apps.append(app)

    def _on_sent(self, post: OutboxPost, remote_id: str) -> None:
        with self._lock:
            self._sent += 1
            if self._sent >= self._target:
                self._done.set()

    def run(self, incidents: list[Incident]) -> float:
        """Plan the openings on the first instance, then time their delivery by all."""
        now = datetime.now(UTC)
        self.apps[0].editor.ingest(incidents, now)
        recorded, _ = self.apps[0].editor.run(now)
        self._target = sum(len(r.keys) for r in recorded)
        started = time.perf_counter()
        for app in self.apps:
            app.delivery.start()
        if not self._done.wait(120):
            raise TimeoutError(f"{self._sent}/{self._target} posts confirmed")
        return self._target / (time.perf_counter() - started)

    def holders(self) -> dict[str, str]:
        return {name: lease.holder for name, lease in self.apps[0].store.leases().items()}

    def close(self) -> None:
        for app in self.apps:
            app.delivery.stop()
            app.close()


def openings(tag: str, n: int) -> list[Incident]:
    started = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    return [
        Incident(
            id=f"{tag}-{i:03d}",
            title=Localized({"en": f"Storage outage {tag}/{i}", "fr": f"Panne {tag}/{i}"}),
            status="investigating",
            severity="critical",
            started_at=started,
            services=("Object Storage",),
            regions=("SBG",),
            message=Localized({"en": "Teams are on site", "fr": "Les équipes sont sur place"}),
        )
        for i in range(n)
    ]


def part_throughput(
    result: Result, sandboxes: Sandboxes, server: PostgresServer, workdir: Path, n: int, reps: int
) -> None:
    rates: dict[str, list[float]] = {"sqlite": [], "pg1": [], "pg2": []}
    for rep in range(reps):  # interleaved: noise on the machine spreads over all three
        for kind in rates:
            url = None if kind == "sqlite" else server.new_database()
            count = 2 if kind == "pg2" else 1
            instances = Instances(workdir / f"tp-{kind}-{rep}", sandboxes, url, count)
            try:
                rates[kind].append(instances.run(openings(f"{kind}{rep}", n)))
                if kind == "pg2":
                    result.details[f"holders_rep{rep}"] = instances.holders()
            finally:
                instances.close()
    base = median(rates["sqlite"])
    result.details["posts_per_s"] = {k: [round(x, 1) for x in v] for k, v in rates.items()}
    for kind, label in (("pg1", "one instance"), ("pg2", "two instances")):
        value = median(rates[kind])
        result.add(
            Figure(
                f"throughput, PostgreSQL, {label} (vs SQLite)",
                ratio(value, base),
                None,
                value,
                base,
                "posts/s",
                "4 channels; higher is better",
            )
        )


def main(argv: list[str] | None = None) -> Result:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--incidents", type=int, help="openings per channel (default 40, quick 10)")
    p.add_argument("--ttls", help="lease TTLs to time, seconds, comma-separated (default 1,3)")
    args = p.parse_args(argv)
    started = time.perf_counter()
    result = Result("instances", args.quick)
    ttls = [float(t) for t in (args.ttls or ("1" if args.quick else "1,3")).split(",")]
    n = args.incidents or (10 if args.quick else 40)
    server = PostgresServer()
    spec = SandboxSpec(x_accounts=2, mastodon_accounts=2)
    with tempfile.TemporaryDirectory() as tmp, Sandboxes(spec) as sandboxes:
        try:
            server.init()
            server.start()
            part_throughput(result, sandboxes, server, Path(tmp), n, 1 if args.quick else 3)
            part_takeover(result, sandboxes, server, Path(tmp), ttls)
        finally:
            server.cleanup()
    finish(result, started, args.json)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
