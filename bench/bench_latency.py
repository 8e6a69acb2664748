"""Latency from a saved state file to the post: `broadcaster run` as ops run it.

Daemons one after the other, each a real ``broadcaster run`` subprocess on a fresh
temporary config with the default ``poll_interval`` (read back from the loaded config), in
each ``--watch`` mode: ``auto`` (the default: the daemon takes a save in when the kernel
reports it; goal: a median of at most 30 ms) and ``poll`` (it looks every
``poll_interval``, for comparison). The sandbox daemon runs in the first mode only:

- ``dry-run``: ``run --dry-run``; a post is the line the dry-run channel appends to
  ``dry-run.jsonl`` (its ``at`` stamp, taken when the channel publishes);
- ``sandbox``: ``run`` with real X and Mastodon channels pointing at the local sandboxes
  (tweepy and Mastodon.py over HTTP on 127.0.0.1); a post is the sandbox's record of it
  (``created_at``, stamped when the server accepted it). The sandboxes run in a third
  process.

The state file is saved ``--saves`` times (every third save by atomic rename, as vim and
ConfigMaps do; the others rewritten in place), each save a new message (and sometimes a new
status) so every save owes one ``update`` per channel. Saves are spaced by a random pause
so they land at every phase of the poll.

Baseline, same saves, same moments: a bare loop in its own process that only ``os.stat``s
the path at the same poll interval and stamps the first change it sees. Its median is what
any poller at that interval costs (about half the interval); the ratio says how much the
daemon adds on top (parse, store, plan, render, record, deliver). The two pollers tick
with independent phases, so with 20 saves that ratio wobbles by about ±25 % between runs;
the ratio to half the poll interval (an ideal poller's mean wait) is reported too, and the
daemon's JSON log ("changes to ...", millisecond stamps) splits its latency into "until
the change was read and stored" and "from there to the post". The issue's goal is
absolute: a median of at most 0.5 s.

``--background N`` puts N other open incidents in the state file (opened and delivered
before the measurement starts): every save makes the daemon re-read all of them.

    .venv/bin/python bench/bench_latency.py            # 20 saves per daemon, ~50 s
    .venv/bin/python bench/bench_latency.py --quick    # 3 saves per daemon, < 10 s
    .venv/bin/python bench/bench_latency.py --mode dry-run --saves 8 --background 1000
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from benchlib import (
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
    percentile,
    ratio,
    wait_until,
    x_account,
    x_channel_toml,
)

from broadcaster.config import load_config

# Seconds, from the issues: a dry-run post within 30 ms of the save with notifications
# (issue 12); within 0.5 s when polling, and on the platforms' sandboxes.
GOAL_MEDIAN = {"auto": 0.030, "poll": 0.5}
GOAL_SANDBOX = 0.5

STATE = """[[incidents]]
id = "bench-latency"
title = {{ en = "Storage outage in SBG", fr = "Panne de stockage à SBG" }}
status = "{status}"
severity = "critical"
services = ["Object Storage"]
regions = ["SBG"]
started_at = 2026-03-02T08:00:00+01:00
message = {{ en = "Recovery going on, ref S{k:03d}", fr = "Reprise en cours, ref S{k:03d}" }}
"""
STATUSES = ("investigating", "identified", "monitoring")
# --background: other open incidents in the same file, unchanged by the saves.
BACKGROUND = """
[[incidents]]
id = "background-{i:05d}"
title = "Degraded service {i}"
status = "monitoring"
severity = "minor"
services = ["VPS"]
started_at = 2026-03-02T07:00:00+01:00
message = "A fix has been deployed; we keep watching, ref B{i:05d}"
"""

# A poller that only looks at the path: (dev, inode, mtime, size), as the daemon's source.
# Fixed-rate ticks like APScheduler's interval trigger, not sleep-after-work.
WATCHER = r"""
import os, sys, time
path, interval = sys.argv[1], float(sys.argv[2])
def signature():
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
last = signature()
print("ready", flush=True)
start = time.monotonic()
tick = 0
while True:
    tick += 1
    time.sleep(max(0.0, start + tick * interval - time.monotonic()))
    now = signature()
    if now != last:
        last = now
        print(repr(time.time()), flush=True)
"""


class Session:
    """One daemon subprocess, the bare watcher beside it, and the saves fed to both."""

    def __init__(self, workdir: Path, config_text: str, dry_run: bool, background: int = 0) -> None:
        self.workdir = workdir
        self.background = "".join(BACKGROUND.format(i=i) for i in range(background))
        workdir.mkdir(parents=True)
        self.config = workdir / "config.toml"
        self.config.write_text(config_text)
        self.state = workdir / "state.toml"
        self.journal = workdir / "data" / "dry-run.jsonl"
        self.dry_run = dry_run
        self.poll_interval = load_config(self.config).poll_interval.total_seconds()
        self.daemon: subprocess.Popen[bytes] | None = None
        self.watcher: subprocess.Popen[bytes] | None = None
        self._files: list[IO[Any]] = []

    def save(self, k: int, atomic: bool) -> tuple[float, float]:
        """Write state number ``k``; returns wall-clock times before and after the save."""
        text = STATE.format(status=STATUSES[k % len(STATUSES)], k=k) + self.background
        before = time.time()
        if atomic:
            tmp = self.state.with_name(".state.toml.swp")
            tmp.write_text(text)
            os.replace(tmp, self.state)
        else:
            self.state.write_text(text)
        return before, time.time()

    def start(self) -> None:
        out = (self.workdir / "daemon.out").open("wb")
        err = (self.workdir / "daemon.err").open("wb")
        watched = (self.workdir / "watcher.out").open("wb")
        self._files += [out, err, watched]
        # JSON logs carry millisecond stamps: "changes to" marks when the daemon took the save in.
        command = [
            sys.executable,
            "-m",
            "broadcaster",
            "run",
            "--log-format",
            "json",
            "--config",
            str(self.config),
        ]
        if self.dry_run:
            command.append("--dry-run")
        self.daemon = subprocess.Popen(
            command, cwd=self.workdir, stdout=out, stderr=err, env=child_env()
        )
        self.watcher = subprocess.Popen(
            [sys.executable, "-c", WATCHER, str(self.state), str(self.poll_interval)],
            stdout=watched,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: b"ready" in self._read("watcher.out"), 10, "the bare watcher")

    def stop(self) -> None:
        for proc in (self.daemon, self.watcher):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # our own children, by pid
        for proc in (self.daemon, self.watcher):
            if proc is not None:
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for f in self._files:
            f.close()

    def _read(self, name: str) -> bytes:
        path = self.workdir / name
        return path.read_bytes() if path.exists() else b""

    def detections(self) -> list[float]:
        lines = self._read("watcher.out").decode().split()
        return [float(x) for x in lines if x != "ready"]

    def stderr(self) -> str:
        return self._read("daemon.err").decode(errors="replace")

    def log(self) -> list[dict[str, Any]]:
        entries = []
        for line in self.stderr().splitlines():
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue  # a traceback line, or a line being written
        return entries

    def taken_in(self) -> list[float]:
        """When the daemon had read, validated and stored a changed state file."""
        return [
            datetime.fromisoformat(e["at"]).timestamp()
            for e in self.log()
            if "changes to" in e.get("message", "")
        ]

    def alive(self) -> None:
        if self.daemon is not None and self.daemon.poll() is not None:
            raise RuntimeError(f"the daemon exited:\n{self.stderr()[-3000:]}")

    # -- posts, as each mode sees them -------------------------------------------------------

    def dry_run_posts(self) -> list[tuple[str, str, float]]:
        """(channel, text, published at) of every line of dry-run.jsonl so far."""
        if not self.journal.exists():
            return []
        rows = []
        for line in self.journal.read_text(encoding="utf-8").splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue  # a line being written right now
            rows.append((r["channel"], r["text"], datetime.fromisoformat(r["at"]).timestamp()))
        return rows


def measure(
    session: Session,
    posts: Callable[[], list[tuple[str, str, float]]],
    channels: int,
    saves: int,
    gap: tuple[float, float],
    rng: random.Random,
    background: int = 0,
) -> dict[str, Any]:
    """Save ``saves`` times; returns per-post latencies and bare-watcher latencies."""
    session.save(0, atomic=False)
    session.start()
    try:

        def opened() -> bool:
            session.alive()
            return len(posts()) >= channels * (1 + background)

        wait_until(opened, 30 + background / 20, "the opening posts")
        latencies: list[float] = []
        by_channel: dict[str, list[float]] = {}
        bare: list[float] = []
        saved: list[tuple[int, str, float]] = []  # (save, how, slowest channel's latency)
        processing: list[float] = []  # "changes to" logged -> post
        for k in range(1, saves + 1):
            time.sleep(rng.uniform(*gap))  # a random phase against the poll tick
            marker = f"S{k:03d}"
            before, after = session.save(k, atomic=k % 3 == 0)

            def arrived(marker: str = marker) -> list[tuple[str, str, float]] | None:
                session.alive()
                found = [p for p in posts() if marker in p[1]]
                return found if len({p[0] for p in found}) >= channels else None

            found = wait_until(arrived, 15, f"the posts of save {k}")
            assert isinstance(found, list)
            for channel, _, at in found:
                latencies.append(at - after)
                by_channel.setdefault(channel, []).append(at - after)
            saved.append(
                (k, "rename" if k % 3 == 0 else "in place", max(a for *_, a in found) - after)
            )

            # The daemon may beat the watcher (their ticks have different phases): wait.
            def seen(before: float = before) -> list[float]:
                return [t for t in session.detections() if t >= before]

            detected = wait_until(
                seen, 2 * session.poll_interval + 5, f"the bare watcher to see save {k}"
            )
            assert isinstance(detected, list)
            bare.append(max(0.0, min(detected) - after))
            # Split the daemon's latency at the moment it logged the change: before is the
            # poll's wait plus reading the file; after is planning, recording, delivering.
            taken = [t for t in session.taken_in() if t >= before - 0.001]
            if taken:
                for *_, at in found:
                    processing.append(at - min(taken))
        # Errors the daemon logged (e.g. a state file read half-written): they explain outliers.
        errors = [e["message"] for e in session.log() if e.get("level") == "error"]
        return {
            "latencies": latencies,
            "by_channel": by_channel,
            "bare": bare,
            "saves": saved,
            "daemon_errors": errors,
            "background": background,
            "processing": processing,
        }
    finally:
        session.stop()


def summarize(
    result: Result, mode: str, data: dict[str, Any], interval: float, watch: str, goal: float
) -> None:
    lat, bare = data["latencies"], data["bare"]
    med, p95, bare_med = median(lat), percentile(lat, 95), median(bare)
    result.add(
        Figure(
            f"{mode}: save→post median / bare stat loop",
            ratio(med, bare_med),
            None,
            med,
            bare_med,
            "s",
            f"poll {interval * 1000:.0f} ms, {len(lat)} posts",
            value_goal=goal,
        )
    )
    # The bare loop and the daemon poll with independent phases, so the ratio above wobbles
    # by ±25% from run to run; half the interval is what any poller waits on average.
    result.add(
        Figure(
            f"{mode}: save→post median / (poll interval / 2)",
            ratio(med, interval / 2),
            None,
            med,
            interval / 2,
            "s",
        )
    )
    result.add(
        Figure(
            f"{mode}: save→post p95 / bare stat loop p95",
            ratio(p95, percentile(bare, 95)),
            None,
            p95,
            percentile(bare, 95),
            "s",
        )
    )
    result.details[mode] = {
        "watch": watch,
        "background_incidents": data["background"],
        "poll_interval_s": interval,
        "posts": len(lat),
        "median_s": med,
        "p95_s": p95,
        "max_s": max(lat) if lat else None,
        "bare_median_s": bare_med,
        "bare_p95_s": percentile(bare, 95),
        "per_channel_median_s": {c: median(v) for c, v in data["by_channel"].items()},
        # From the daemon's "changes to" log line to the post: the daemon's own work.
        "processing_median_s": median(data["processing"]),
        "processing_p95_s": percentile(data["processing"], 95),
        "slowest_saves": sorted(data["saves"], key=lambda s: -s[2])[:3],
        "daemon_errors": data["daemon_errors"][:5],
        "latencies_s": [round(x, 4) for x in lat],
        "bare_s": [round(x, 4) for x in bare],
    }


def main(argv: list[str] | None = None) -> Result:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--saves", type=int, help="saves per daemon (default 20; quick 4)")
    p.add_argument("--mode", choices=("both", "dry-run", "sandbox"), default="both")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument(
        "--background",
        type=int,
        default=0,
        help="other open incidents in the state file (each save re-reads them all)",
    )
    p.add_argument(
        "--watch",
        default="auto,poll",
        help="watch modes of the dry-run daemon; the sandbox one runs in the first "
        "(default: %(default)s)",
    )
    args = p.parse_args(argv)
    started = time.perf_counter()
    saves = args.saves or (3 if args.quick else 20)
    gap = (0.15, 0.45) if args.quick else (0.3, 0.9)
    rng = random.Random(args.seed)
    result = Result("latency", args.quick)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        watches = [w for w in args.watch.split(",") if w]
        if args.mode in ("both", "dry-run"):
            for watch in watches:
                config = config_header(watch=watch)
                config += '\n[channels.x-en]\nplatform = "x"\nlanguage = "en"\n'
                config += (
                    '\n[channels.mastodon-fr]\nplatform = "mastodon"\nlanguage = "fr"\n'
                    'api_base_url = "https://mastodon.invalid"\n'
                )
                label = f"dry-run, watch {watch}"
                session = Session(
                    root / f"dry-run-{watch}", config, dry_run=True, background=args.background
                )
                data = measure(
                    session, session.dry_run_posts, 2, saves, gap, rng, background=args.background
                )
                summarize(result, label, data, session.poll_interval, watch, GOAL_MEDIAN[watch])

        if args.mode in ("both", "sandbox"):
            with Sandboxes(SandboxSpec()) as sandboxes:
                config = config_header(watch=watches[0])
                config += x_channel_toml("x-en", "en", sandboxes.x_url, x_account(0))
                config += mastodon_channel_toml(
                    "mastodon-fr", "fr", sandboxes.mastodon_url, mastodon_account(0)
                )
                session = Session(
                    root / "sandbox", config, dry_run=False, background=args.background
                )

                def sandbox_posts() -> list[tuple[str, str, float]]:
                    return [(platform, text, at) for platform, _, text, at, _ in sandboxes.posts()]

                data = measure(
                    session, sandbox_posts, 2, saves, gap, rng, background=args.background
                )
                errors = sandboxes.errors()
                label = f"sandbox, watch {watches[0]}"
                summarize(result, label, data, session.poll_interval, watches[0], GOAL_SANDBOX)
                result.details["non_2xx_answers"] = errors[:10]

    for mode, d in result.details.items():
        if isinstance(d, dict) and "posts" in d:
            print(
                f"{mode}: {d['posts']} posts, median {d['median_s'] * 1000:.0f} ms, p95 "
                f"{d['p95_s'] * 1000:.0f} ms, max {d['max_s'] * 1000:.0f} ms; bare stat loop "
                f"median {d['bare_median_s'] * 1000:.0f} ms (poll "
                f"{d['poll_interval_s'] * 1000:.0f} ms); logged change → post median "
                f"{d['processing_median_s'] * 1000:.0f} ms, p95 "
                f"{d['processing_p95_s'] * 1000:.0f} ms; per channel "
                + ", ".join(f"{c} {v * 1000:.0f} ms" for c, v in d["per_channel_median_s"].items())
            )
    finish(result, started, args.json)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
