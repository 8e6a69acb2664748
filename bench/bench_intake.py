"""Event intake: how fast, and how soon posted, through the spool, Redis Streams and HTTP.

Each source drives a dry-run ``Daemon`` running in this process (as tests/test_spool.py,
test_redis.py and test_http.py do), with a fresh data directory, the dry-run twins of
``x-en`` and ``mastodon-fr``, and only that one intake configured:

- ``spool``: files written as ``.part`` and renamed to ``NNNNNN.json`` in ``incoming/``;
  accepted = moved to ``done/`` (after the store's commit, by a durable rename);
- ``redis``: ``XADD`` to a stream of a real ``redis-server`` on 127.0.0.1 (started by
  tests/redis_server.py, ``appendfsync everysec``); accepted = delivered to the group and
  ``XACK``ed (after the store's commit);
- ``http``: ``POST /v1/events`` to the daemon's listener on 127.0.0.1, one request per
  connection (the listener closes each); accepted = the ``202`` (sent after the commit).

Two measurements per source, on the same daemon:

1. **burst throughput**: ``--events`` events over ``--incidents`` incidents (the first
   event of each opens it, the next ones change its status or message, so every event owes
   an update), handed over as fast as the producer can (spool: all files; redis: one
   pipeline of ``XADD``; http: one client, request after request), timed from the first
   hand-over to the last event accepted; ``--reps`` bursts per daemon, each on its own new
   incidents, median. Delivery runs meanwhile, as in production: the dry-run workers
   publish what each plan recorded.
2. **event → post latency**: then ``--singles`` single events, one at a time (each a new
   message for one of those incidents, so each owes one update per channel), from the
   moment it is handed over (just before the rename, the ``XADD``, the request, the call)
   to the post's line in ``dry-run.jsonl``, stamped as the journal writes the post to the
   daemon's ``out`` stream right after appending (and fsyncing) that line. Every post is a
   sample: two per event. After each event, a random pause of up to one poll interval, so
   events land at every phase of the poll.

Baseline, in the same run and on the same kind of daemon (no intake configured): the very
same events applied by calling ``Daemon.submit`` directly, no source and no polling (what
the HTTP handler calls, minus HTTP). Ratios are time ratios: ``burst`` is time per accepted
event over the baseline's (above 1: slower), ``median``/``p95`` latency over the
baseline's. Everything runs in blocks, each with its own baseline: ``auto`` (the default
``watch = "auto"``: the spool's directory watched, Redis read with a blocking
``XREADGROUP``; goal: a median event→post latency of at most 30 ms), ``poll`` (``watch =
"poll"`` at the config's default ``poll_interval``, read back from the loaded config: 250
ms), and ``poll:50ms`` for a shorter interval.

Note what differs by design: a polled source applies up to 100 events per poll and plans
once per poll (so a burst's consecutive updates to one incident become one post), while
``submit``, called by one producer at a time here, commits each event as it comes and plans
a moment later (once for whatever committed meanwhile); the posts each burst recorded and
published are in the JSON details. Redis figures are skipped, with a note, when
``redis-server`` is not installed.

3. **HTTP storm** (issue 12's figure): ``--storm-events`` events (2,000) over
   ``--storm-incidents`` incidents (200) POSTed by ``--clients`` (8) client threads in a
   process of their own, each reusing one ``http.client.HTTPConnection`` that the listener
   keeps alive (8 connections in all, counted and reported), an incident's events all from
   one client, in order; on a fresh dry-run daemon with only the HTTP intake; timed from the
   first request to the last ``202``. For comparison, each storm is repeated with every
   request saying ``Connection: close`` (a connection per event, as before the listener
   kept connections alive). Baseline: single-row SQLite commits per second with
   ``synchronous=FULL`` in WAL, on the same disk (the same temporary directory), one
   thread, measured before and after each storm. The figure is a time ratio (time per
   accepted event over time per commit; goal ≤ 2, i.e. accepted/s ≥ 0.5 × commits/s);
   ``--storm-reps`` storms (3; quick 1), medians.

    .venv/bin/python bench/bench_intake.py             # 3 storms, 3 x 200 events, 30 singles
    .venv/bin/python bench/bench_intake.py --quick     # 40 events, 5 singles, < 10 s
    .venv/bin/python bench/bench_intake.py --sources spool,http --blocks auto,poll:50ms
    .venv/bin/python bench/bench_intake.py --sources http --blocks auto --reps 1
"""

from __future__ import annotations

import http.client
import io
import json
import logging
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchlib import (
    LOOPBACK,
    ROOT,
    Figure,
    Result,
    child_env,
    config_header,
    finish,
    median,
    parser,
    percentile,
    ratio,
    wait_until,
)

from broadcaster.app import service
from broadcaster.config import load_config
from broadcaster.model import PostState

# tests/redis_server.py: a real redis-server on a free loopback port.
sys.path.insert(0, str(ROOT / "tests"))

SOURCES = ("spool", "redis", "http")
GOAL_MEDIAN = 0.030  # seconds, event → post with notifications (issue 12)
TOKEN = "bench-intake-token-7c41e0a9d2b6f358"
STATUSES = ("identified", "monitoring")
CHANNELS = (
    '\n[channels.x-en]\nplatform = "x"\nlanguage = "en"\n'
    '\n[channels.mastodon-fr]\nplatform = "mastodon"\nlanguage = "fr"\n'
    'api_base_url = "https://mastodon.invalid"\n'
)


# -- the events ------------------------------------------------------------------------------


def incident_id(rep: int, i: int) -> str:
    return f"bench-{rep}-{i:03d}"


def burst_events(n: int, incidents: int, started: str, rep: int) -> list[dict[str, Any]]:
    """``n`` events round-robin over ``incidents`` new incidents: an opening each, then
    updates (a status, then messages); every event changes what is published."""
    events = []
    for k in range(n):
        i, step = k % incidents, k // incidents
        message = {
            "en": f"Recovery in progress on rack {i}, step {step}, ref B{rep}-{k:05d}",
            "fr": f"Reprise en cours sur la baie {i}, étape {step}, réf. B{rep}-{k:05d}",
        }
        event: dict[str, Any] = {"id": incident_id(rep, i), "message": message}
        if step == 0:
            event |= {
                "title": {
                    "en": f"Storage outage in SBG, rack {i}",
                    "fr": f"Panne de stockage à SBG, baie {i}",
                },
                "status": "investigating",
                "severity": "critical",
                "services": ["Object Storage"],
                "regions": ["SBG"],
                "started_at": started,
            }
        elif step <= len(STATUSES):
            event["status"] = STATUSES[step - 1]
        events.append(event)
    return events


def single_event(k: int, incidents: int, tag: str) -> dict[str, Any]:
    i = k % incidents
    return {
        "id": incident_id(0, i),
        "message": {
            "en": f"Still recovering rack {i}, ref {tag}{k:03d}",
            "fr": f"Reprise toujours en cours sur la baie {i}, réf. {tag}{k:03d}",
        },
    }


class Stamps(io.TextIOBase):
    """The daemon's ``out``: the dry-run journal writes each post here right after its line
    is appended to ``dry-run.jsonl`` (and fsynced). Stamps each one, wakes whoever waits:
    no polling of the file, no millisecond rounding of its ``at``."""

    def __init__(self) -> None:
        super().__init__()
        self.cond = threading.Condition()
        self.posts: list[tuple[float, str]] = []

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        at = time.perf_counter()
        with self.cond:
            self.posts.append((at, text))
            self.cond.notify_all()
        return len(text)

    def wait_for(self, n: int, timeout: float, what: str) -> list[tuple[float, str]]:
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.posts) >= n, timeout):
                raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
            return list(self.posts)


# -- one daemon, fed by one source -----------------------------------------------------------


class Rig:
    """A dry-run daemon in this process, fresh data directory, one way to hand events over."""

    def __init__(
        self,
        mode: str,
        workdir: Path,
        interval: str | None,
        redis_url: str | None = None,
        watch: str = "auto",
    ) -> None:
        self.mode = mode
        self.workdir = workdir
        workdir.mkdir(parents=True)
        intake = ""
        self.stream = f"bench:{workdir.name}:events"
        if mode == "spool":
            intake = '\n[intake.spool]\ndirectory = "spool"\n'
        elif mode == "redis":
            intake = f'\n[intake.redis]\nurl = "{redis_url}"\nstream = "{self.stream}"\n'
        elif mode == "http":
            intake = f'\n[intake.http]\nlisten = "{LOOPBACK}:0"\ntoken = "{TOKEN}"\n'
        self.config = workdir / "config.toml"
        header = config_header(poll_interval=interval, watch=watch)
        self.config.write_text(header + CHANNELS + intake)
        (workdir / "state.toml").write_text("")
        self.poll_interval = load_config(self.config).poll_interval.total_seconds()
        self.incoming = workdir / "spool" / "incoming"
        self.done = workdir / "spool" / "done"
        self._counter = 0
        self._last_id: bytes = b"0-0"
        self.redis: Any = None
        if mode == "redis":
            import redis

            self.redis = redis.Redis.from_url(str(redis_url))
        self.out = Stamps()
        built = service(self.config, dry_run=True, out=self.out)
        self.daemon = built.daemon
        self.daemon.start()
        self.address = built.shell.http_address

    def close(self) -> None:
        self.daemon.stop()
        self.daemon.shutdown()
        if self.redis is not None:
            self.redis.close()

    # -- handing events over

    def hand_over(self, events: list[dict[str, Any]]) -> None:
        """Give the daemon these events, in order, as its producers do."""
        if self.mode == "baseline":
            for event in events:
                self.daemon.submit(event, origin="bench", source="bench")
        elif self.mode == "spool":
            for event in events:
                self._counter += 1
                name = f"{self._counter:06d}.json"
                part = self.incoming / f".{name}.part"
                part.write_text(json.dumps(event))
                part.rename(self.incoming / name)
        elif self.mode == "redis":
            pipe = self.redis.pipeline(transaction=False)
            for event in events:
                pipe.xadd(self.stream, {"event": json.dumps(event)})
            self._last_id = pipe.execute()[-1]
            self._counter += len(events)
        elif self.mode == "http":
            for event in events:
                self._post(event)
            self._counter += len(events)

    def _post(self, event: dict[str, Any]) -> None:
        assert self.address is not None
        conn = http.client.HTTPConnection(*self.address, timeout=30)
        try:
            body = json.dumps(event).encode()
            conn.request(
                "POST",
                "/v1/events",
                body,
                {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
            )
            r = conn.getresponse()
            answer = r.read()
        finally:
            conn.close()
        if r.status != 202:
            raise RuntimeError(f"POST /v1/events answered {r.status}: {answer[:300]!r}")

    def all_accepted(self) -> bool:
        """Every event handed over so far is committed and acknowledged to its producer."""
        if self.mode == "spool":
            return sum(1 for _ in os.scandir(self.done)) >= self._counter
        if self.mode == "redis":
            (group,) = self.redis.xinfo_groups(self.stream)
            last = group["last-delivered-id"]
            return int(group["pending"]) == 0 and _id(last) >= _id(self._last_id)
        return True  # submit and POST return once committed

    # -- what was posted

    def drained(self) -> bool:
        app = self.daemon.app
        assert app is not None
        waiting = (PostState.PENDING.value, PostState.SENDING.value)
        return not any(n for (_, state), n in app.store.counts().items() if state in waiting)

    def recorded_posts(self) -> int:
        app = self.daemon.app
        assert app is not None
        return sum(app.store.counts().values())


def _id(entry_id: bytes | str) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


# -- the measurements ------------------------------------------------------------------------


def burst(rig: Rig, events: list[dict[str, Any]]) -> dict[str, Any]:
    posted, recorded = len(rig.out.posts), rig.recorded_posts()
    t0 = time.perf_counter()
    rig.hand_over(events)
    handed = time.perf_counter() - t0
    wait_until(rig.all_accepted, 60, f"{rig.mode}: the burst to be accepted")
    seconds = time.perf_counter() - t0
    # A poll acknowledges each event, then plans for the whole batch, all under the plan
    # lock: planning once more waits for that plan to be recorded (and records nothing).
    rig.daemon.plan()
    wait_until(rig.drained, 60, f"{rig.mode}: the burst's posts to be delivered")
    delivered = time.perf_counter() - t0
    return {
        "events": len(events),
        "seconds": seconds,
        "events_per_s": len(events) / seconds,
        "handover_s": handed,
        "until_delivered_s": delivered,
        "posts": len(rig.out.posts) - posted,
        # Recorded by the plans, published or superseded by a newer update while unsent.
        "recorded_posts": rig.recorded_posts() - recorded,
    }


def singles(
    rig: Rig, n: int, incidents: int, rng: random.Random, gap: float, tag: str
) -> list[float]:
    """Event → post, for each of ``n`` events handed over one at a time (two posts each)."""
    latencies: list[float] = []
    for k in range(n):
        marker = f"{tag}{k:03d}"
        posted = len(rig.out.posts)
        before = time.perf_counter()
        rig.hand_over([single_event(k, incidents, tag)])
        found = rig.out.wait_for(posted + 2, 10, f"{rig.mode}: the posts of event {k}")[posted:]
        assert len(found) == 2 and all(marker in text for _, text in found), found
        latencies += [at - before for at, _ in found]
        time.sleep(rng.uniform(0.005, gap))  # land at every phase of the next poll
    wait_until(rig.all_accepted, 10, f"{rig.mode}: the single events to be acknowledged")
    return latencies


def measure_block(
    root: Path,
    watch: str,
    interval: str | None,
    sources: list[str],
    redis_url: str | None,
    sizes: dict[str, int],
    rng: random.Random,
    skipped: _Counting,
) -> tuple[float, dict[str, dict[str, Any]]]:
    started = (datetime.now(UTC) - timedelta(minutes=10)).isoformat(timespec="seconds")
    incidents = sizes["incidents"]
    out: dict[str, dict[str, Any]] = {}
    poll = 0.0
    for mode in ["baseline", *sources]:
        rig = Rig(
            mode, root / f"{mode}-{watch}-{interval or 'default'}", interval, redis_url, watch
        )
        poll = rig.poll_interval
        skipped_before = skipped.count
        try:
            # Each repetition opens its own incidents: the same work every time.
            bursts = [
                burst(rig, burst_events(sizes["events"], incidents, started, rep))
                for rep in range(sizes["reps"])
            ]
            # Push sources answer without polling: a short pause is enough between singles.
            gap = poll if mode in ("spool", "redis") and watch == "poll" else 0.05
            latencies = singles(rig, sizes["singles"], incidents, rng, gap, "L")
        finally:
            rig.close()
        out[mode] = {
            "events": sizes["events"],
            "events_per_s": median([b["events_per_s"] for b in bursts]),
            "posts": median([b["posts"] for b in bursts]),
            "recorded_posts": median([b["recorded_posts"] for b in bursts]),
            "bursts": bursts,
            "latencies": latencies,
            "poll_runs_skipped": skipped.count - skipped_before,
        }
    return poll, out


def report(result: Result, watch: str, poll: float, block: dict[str, dict[str, Any]]) -> None:
    base = block["baseline"]
    base_lat = base["latencies"]
    label = "watch auto" if watch == "auto" else f"poll {poll * 1000:.0f} ms"
    for mode in SOURCES:
        data = block.get(mode)
        if data is None:
            continue
        lat = data["latencies"]
        result.add(
            Figure(
                f"{mode}: burst, {label} / Daemon.submit",
                ratio(base["events_per_s"], data["events_per_s"]),
                None,
                data["events_per_s"],
                base["events_per_s"],
                "events/s",
                f"{data['events']} events, median of {len(data['bursts'])}; "
                f"{data['posts']:.0f} posts vs {base['posts']:.0f}",
            )
        )
        result.add(
            Figure(
                f"{mode}: event→post median, {label} / Daemon.submit",
                ratio(median(lat), median(base_lat)),
                None,
                median(lat),
                median(base_lat),
                "s",
                f"{len(lat)} posts",
                # Issue 12: at most 30 ms with notifications (HTTP is pushed anyway).
                value_goal=GOAL_MEDIAN if watch == "auto" and mode != "http" else None,
            )
        )
        result.add(
            Figure(
                f"{mode}: event→post p95, {label} / Daemon.submit",
                ratio(percentile(lat, 95), percentile(base_lat, 95)),
                None,
                percentile(lat, 95),
                percentile(base_lat, 95),
                "s",
            )
        )
    result.details[label] = {
        mode: {
            **{k: v for k, v in data.items() if k != "latencies"},
            "median_s": median(data["latencies"]),
            "p95_s": percentile(data["latencies"], 95),
            "max_s": max(data["latencies"]),
            # What any poller waits on average is half its interval.
            "median_over_half_poll": median(data["latencies"]) / (poll / 2),
            "latencies_s": [round(x, 4) for x in data["latencies"]],
        }
        for mode, data in block.items()
    }


# -- the storm: HTTP intake against the disk's own commit rate --------------------------------


def sqlite_commits_per_s(directory: Path, n: int, max_seconds: float) -> float:
    """The baseline: single-row SQLite commits per second, ``synchronous=FULL`` in WAL, in
    ``directory`` (the daemon's disk), each its own transaction, as fast as one thread can:
    ``n`` of them, or as many as ``max_seconds`` allow."""
    path = directory / f"commits-{time.monotonic_ns()}.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, data TEXT NOT NULL)")
        row = json.dumps(burst_events(1, 1, "2026-01-01T00:00:00+00:00", 0)[0])
        t0 = time.perf_counter()
        done, elapsed = 0, 0.0
        while done < n and elapsed < max_seconds:
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO events (data) VALUES (?)", (row,))
            db.execute("COMMIT")
            done += 1
            elapsed = time.perf_counter() - t0
        return done / elapsed
    finally:
        db.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


def http_clients(
    address: tuple[str, int], events: list[dict[str, Any]], clients: int, keep_alive: bool
) -> dict[str, float]:
    """Client process: ``clients`` threads, each with its own ``http.client.HTTPConnection``
    reused for all its requests, POST the events (an incident's events all from one client,
    in order). ``keep_alive``: the connection stays open between requests (HTTP/1.1);
    otherwise each request says ``Connection: close`` (one connection per event, as the
    listener answered before it kept connections alive). Returns the seconds from the start
    to the last 202 and the connections opened."""
    lanes: list[list[bytes]] = [[] for _ in range(clients)]
    for event in events:
        lanes[hash(event["id"]) % clients].append(json.dumps(event).encode())
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    if not keep_alive:
        headers["Connection"] = "close"
    start = threading.Barrier(clients + 1)
    failures: list[str] = []
    opened = [0] * clients

    def client(n: int, lane: list[bytes]) -> None:
        # http.client reconnects (lazily, at the next request) only when the listener closed
        # the connection: a request made while ``sock`` is None opens a new one.
        conn = http.client.HTTPConnection(*address, timeout=60)
        start.wait()
        for body in lane:
            opened[n] += conn.sock is None
            conn.request("POST", "/v1/events", body, headers)
            r = conn.getresponse()
            answer = r.read()
            if r.status != 202:
                failures.append(f"{r.status}: {answer[:200]!r}")
                return
        conn.close()

    threads = [threading.Thread(target=client, args=(n, lane)) for n, lane in enumerate(lanes)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    if failures:
        raise RuntimeError(f"{len(failures)} client(s) stopped on an answer: {failures[0]}")
    return {"seconds": seconds, "connections": sum(opened)}


def storm(
    root: Path, events: list[dict[str, Any]], clients: int, keep_alive: bool = True
) -> dict[str, Any]:
    """One storm on a fresh dry-run daemon with only the HTTP intake: the clients run in a
    process of their own (their CPU is not the daemon's), timed from their first request
    to the last 202; then until every post is delivered."""
    rig = Rig("http", root, None)
    try:
        assert rig.address is not None
        feed = root / "storm.json"
        feed.write_text(json.dumps({"address": list(rig.address), "events": events}))
        command = [sys.executable, __file__, "--http-clients", str(feed), str(clients)]
        if not keep_alive:
            command.append("--close")
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=child_env())
        cpu0 = time.process_time()
        out, _ = proc.communicate(timeout=600)
        cpu = time.process_time() - cpu0
        if proc.returncode != 0:
            raise RuntimeError(f"the HTTP clients failed (exit {proc.returncode})")
        clients_said = json.loads(out)
        seconds = float(clients_said["seconds"])
        t0 = time.perf_counter()
        rig.daemon.plan()
        wait_until(rig.drained, 120, "the storm's posts to be delivered")
        return {
            "keep_alive": keep_alive,
            "events": len(events),
            "connections": int(clients_said["connections"]),
            "seconds": seconds,
            "events_per_s": len(events) / seconds,
            # The daemon's process (intake, commits, plans, dry-run delivery), while the
            # clients ran: per event accepted.
            "daemon_cpu_ms_per_event": cpu / len(events) * 1000,
            "drained_after_s": time.perf_counter() - t0,
            "posts": len(rig.out.posts),
            "recorded_posts": rig.recorded_posts(),
        }
    finally:
        rig.close()


def measure_storm(root: Path, sizes: dict[str, int], result: Result) -> None:
    """The issue's figure: HTTP intake of a storm vs the disk's single-row commit rate, in
    interleaved repetitions (baseline, storm kept alive, storm reconnecting, baseline...),
    medians."""
    started = (datetime.now(UTC) - timedelta(minutes=10)).isoformat(timespec="seconds")
    n, incidents, clients = sizes["storm_events"], sizes["storm_incidents"], sizes["clients"]
    baselines: list[float] = []
    storms: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
    for rep in range(sizes["storm_reps"]):
        baselines.append(sqlite_commits_per_s(root, sizes["commits"], sizes["commit_seconds"]))
        # Alternate which goes first, so neither always follows the baseline.
        for keep_alive in (True, False) if rep % 2 == 0 else (False, True):
            workdir = root / f"storm-{rep}-{'kept' if keep_alive else 'closed'}"
            events = burst_events(n, incidents, started, 2 * rep + (not keep_alive))
            storms[keep_alive].append(storm(workdir, events, clients, keep_alive))
    baselines.append(sqlite_commits_per_s(root, sizes["commits"], sizes["commit_seconds"]))
    commits = median(baselines)
    for keep_alive, label in ((True, "keep-alive"), (False, "a connection per event")):
        runs = storms[keep_alive]
        accepted = median([s["events_per_s"] for s in runs])
        result.add(
            Figure(
                f"http storm: {n} events over {incidents} incidents, {clients} clients"
                + ("" if keep_alive else f", {label}")
                + " (time per event / per single-row commit)",
                ratio(commits, accepted),
                2.0 if keep_alive else None,
                accepted,
                commits,
                "events/s vs commits/s",
                f"accepted/commits = {accepted / commits:.3f}"
                + (" (goal ≥ 0.5)" if keep_alive else "")
                + f"; median of {len(runs)}; daemon CPU "
                f"{median([s['daemon_cpu_ms_per_event'] for s in runs]):.2f} ms/event; "
                f"{median([s['connections'] for s in runs]):.0f} connections",
            )
        )
    result.details["storm"] = {
        "storms": storms[True],
        "storms_a_connection_per_event": storms[False],
        "sqlite_commits_per_s": baselines,
    }
    for s in storms[True] + storms[False]:
        print(
            f"storm ({'keep-alive' if s['keep_alive'] else 'a connection per event'}): "
            f"{s['events']} events over {incidents} incidents, {clients} clients, "
            f"{s['connections']} connections: "
            f"{s['events_per_s']:.0f} events/s ({s['seconds']:.2f} s, daemon CPU "
            f"{s['daemon_cpu_ms_per_event']:.2f} ms/event), delivered {s['drained_after_s']:.2f} s "
            f"later, {s['posts']} posts"
        )
    print(
        "storm baseline: single-row SQLite commits/s (FULL, WAL): "
        + ", ".join(f"{b:.0f}" for b in baselines)
    )


class _Counting(logging.Handler):
    """Counts APScheduler's "skipped: maximum number of running instances" warnings."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "maximum number of running instances" in record.getMessage():
            self.count += 1


def main(argv: list[str] | None = None) -> Result:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, help="events per burst (default 200; quick 40)")
    p.add_argument("--incidents", type=int, default=20, help="incidents the burst spreads over")
    p.add_argument("--singles", type=int, help="single events for latency (default 30; quick 5)")
    p.add_argument(
        "--blocks",
        default="auto,poll",
        help="auto (notifications), poll (at the config's default interval) or poll:INTERVAL, "
        "comma-separated (default: %(default)s)",
    )
    p.add_argument("--sources", default=",".join(SOURCES), help="default: %(default)s")
    p.add_argument("--reps", type=int, help="bursts per source, median (default 3; quick 1)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--storm-events", type=int, help="HTTP storm (default 2000; quick 200)")
    p.add_argument("--storm-incidents", type=int, help="default 200; quick 40")
    p.add_argument("--clients", type=int, default=8, help="HTTP storm clients (default 8)")
    p.add_argument("--storm-reps", type=int, help="storms, median (default 3; quick 1; 0: none)")
    args = p.parse_args(argv)
    started = time.perf_counter()
    sizes = {
        "events": args.events or (40 if args.quick else 200),
        "incidents": args.incidents,
        "singles": args.singles or (5 if args.quick else 30),
        "reps": args.reps or (1 if args.quick else 3),
        "storm_events": args.storm_events or (200 if args.quick else 2000),
        "storm_incidents": args.storm_incidents or (40 if args.quick else 200),
        "clients": args.clients,
        "storm_reps": (1 if args.quick else 3) if args.storm_reps is None else args.storm_reps,
        "commits": 2000,
        "commit_seconds": 0.3 if args.quick else 2.0,
    }
    sources = [s for s in args.sources.split(",") if s]
    unknown = set(sources) - set(SOURCES)
    if unknown:
        p.error(f"unknown source(s): {', '.join(sorted(unknown))}")
    blocks: list[tuple[str, str | None]] = []
    for block in (b for b in args.blocks.split(",") if b):
        watch, _, interval = block.partition(":")
        if watch not in ("auto", "poll"):
            p.error(f"unknown block {block!r}: auto, poll or poll:INTERVAL")
        blocks.append((watch, interval or None))
    rng = random.Random(args.seed)
    result = Result("intake", args.quick)
    os.environ.pop("NOTIFY_SOCKET", None)  # never talk to a systemd that may be around
    # A poll still running at the next tick makes APScheduler skip that tick (max_instances
    # = 1) and warn: counted, not printed.
    skipped = _Counting()
    apscheduler = logging.getLogger("apscheduler")
    apscheduler.addHandler(skipped)
    apscheduler.propagate = False

    server = None
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if "redis" in sources:
            import redis_server

            if redis_server.BINARY is None:
                sources.remove("redis")
                notes.append(
                    "redis figures skipped: redis-server is not installed "
                    "(Debian: apt-get install redis-server)"
                )
            else:
                server = redis_server.RedisServer(root / "redis", appendfsync="everysec")
                server.start()
        try:
            if sizes["storm_reps"]:
                measure_storm(root, sizes, result)
            for watch, interval in blocks:
                poll, block = measure_block(
                    root,
                    watch,
                    interval,
                    sources,
                    server.url if server else None,
                    sizes,
                    rng,
                    skipped,
                )
                report(result, watch, poll, block)
        finally:
            if server is not None:
                server.stop()

    result.details["sizes"] = sizes
    result.details["notes"] = notes
    for label, block in list(result.details.items()):
        if not isinstance(block, dict) or "baseline" not in block:
            continue
        for mode, d in block.items():
            b = d["bursts"]
            print(
                f"{label}, {mode}: burst of {d['events']} events "
                f"{d['events_per_s']:.0f}/s (each: "
                + ", ".join(f"{x['seconds']:.2f} s" for x in b)
                + f"; handed over in {median([x['handover_s'] for x in b]) * 1000:.0f} ms, "
                f"delivered by {median([x['until_delivered_s'] for x in b]):.2f} s, "
                f"{d['posts']:.0f} posts of {d['recorded_posts']:.0f} recorded, "
                f"{d['poll_runs_skipped']} poll ticks skipped); "
                f"event→post median {d['median_s'] * 1000:.1f} ms, "
                f"p95 {d['p95_s'] * 1000:.1f} ms, max {d['max_s'] * 1000:.1f} ms"
            )
    for note in notes:
        print(f"NOTE: {note}")
    finish(result, started, args.json)
    return result


if __name__ == "__main__":
    if sys.argv[1:2] == ["--http-clients"]:
        feed = json.loads(Path(sys.argv[2]).read_text())
        address = (str(feed["address"][0]), int(feed["address"][1]))
        keep_alive = sys.argv[4:5] != ["--close"]
        print(json.dumps(http_clients(address, feed["events"], int(sys.argv[3]), keep_alive)))
    else:
        main(sys.argv[1:])
