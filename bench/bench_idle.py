"""Idle CPU: a dry-run daemon with many open incidents and nothing to do, against a bare
process that stats the state file every 250 ms.

A real ``broadcaster run --dry-run`` subprocess on a fresh config (``x-en`` and
``mastodon-fr``) whose state file holds ``--incidents`` open incidents. Once every opening
post is published (nothing left to deliver, no update due within the hour), the daemon's CPU
time is read over ``--seconds`` seconds, beside that of a bare Python process, started in the
same run, that only ``os.stat``s the same path every 250 ms (what any poller at the default
``poll_interval`` costs at the least). CPU time is the sum of ``/proc/PID/task/*/schedstat``
(nanoseconds, every thread) at both ends; wake-ups are the voluntary context switches.

Both modes of the daemon run side by side with the one baseline, over the same window:
``watch = "auto"`` (notifications; the goal: at most 1x the baseline) and ``watch = "poll"``
(for comparison). At the end each daemon gets SIGTERM and the time it takes to exit is
reported too. The window holds no safety-net re-plan (one every ``REPLAN_EVERY``, 15 min), so
one is timed afterwards (``Editor.run`` on the store the daemon left, in this process) and
its share of the window added in a second figure.

    .venv/bin/python bench/bench_idle.py              # 1,000 incidents, 60 s
    .venv/bin/python bench/bench_idle.py --quick      # 50 incidents, 3 s
"""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import (
    Figure,
    Result,
    child_env,
    config_header,
    finish,
    parser,
    ratio,
    wait_until,
)

from broadcaster.app import build
from broadcaster.clock import utcnow
from broadcaster.config import load_config
from broadcaster.daemon import REPLAN_EVERY

GOAL = 1.0  # the daemon's idle CPU over the bare stat loop's, from the issue

INCIDENT = """
[[incidents]]
id = "idle-{i:05d}"
title = {{ en = "Degraded service {i}", fr = "Service dégradé {i}" }}
status = "monitoring"
severity = "minor"
services = ["VPS"]
started_at = {started}
message.en = "A fix is deployed; we keep watching, ref I{i:05d}"
message.fr = "Correctif déployé ; nous surveillons, réf. I{i:05d}"
"""
CHANNELS = (
    '\n[channels.x-en]\nplatform = "x"\nlanguage = "en"\n'
    '\n[channels.mastodon-fr]\nplatform = "mastodon"\nlanguage = "fr"\n'
    'api_base_url = "https://mastodon.invalid"\n'
)
BARE = r"""
import os, sys, time
path = sys.argv[1]
print("ready", flush=True)
start = time.monotonic()
tick = 0
while True:
    tick += 1
    time.sleep(max(0.0, start + tick * 0.25 - time.monotonic()))
    try:
        os.stat(path)
    except OSError:
        pass
"""


def cpu(pid: int) -> tuple[float, int]:
    """(CPU seconds, voluntary context switches) of every thread of ``pid`` so far."""
    seconds, switches = 0.0, 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            seconds += int((task / "schedstat").read_text().split()[0]) / 1e9
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    switches += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue  # a thread that just ended
    return seconds, switches


def journal_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as f:
        return sum(1 for _ in f)


def start_daemon(root: Path, watch: str, incidents: int) -> subprocess.Popen[bytes]:
    root.mkdir(parents=True)
    (root / "config.toml").write_text(config_header(watch=watch) + CHANNELS)
    started = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() - 600))
    (root / "state.toml").write_text(
        "".join(INCIDENT.format(i=i, started=started) for i in range(incidents)), encoding="utf-8"
    )
    with (root / "daemon.err").open("wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "broadcaster", "run", "--dry-run", "--config", "config.toml"],
            cwd=root,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=child_env(),
        )


def measure(root: Path, watches: list[str], incidents: int, seconds: float) -> dict[str, Any]:
    """Every daemon and the bare process idle side by side, in the same window."""
    daemons = {watch: start_daemon(root / watch, watch, incidents) for watch in watches}
    bare = subprocess.Popen(
        [sys.executable, "-c", BARE, str(root / watches[0] / "state.toml")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert bare.stdout is not None
        bare.stdout.readline()  # "ready"

        def published() -> bool:
            for watch, daemon in daemons.items():
                if daemon.poll() is not None:
                    raise RuntimeError((root / watch / "daemon.err").read_text()[-3000:])
            journals = [root / w / "data" / "dry-run.jsonl" for w in daemons]
            return all(journal_lines(j) >= 2 * incidents for j in journals)

        wait_until(published, 60 + incidents / 10, "the opening posts")
        time.sleep(1.0)  # the last post's bookkeeping
        pids = {watch: d.pid for watch, d in daemons.items()} | {"bare": bare.pid}
        before = {name: cpu(pid) for name, pid in pids.items()}
        t0 = time.monotonic()
        time.sleep(seconds)
        after = {name: cpu(pid) for name, pid in pids.items()}
        wall = time.monotonic() - t0
        exits = {}
        for watch, daemon in daemons.items():
            stopping = time.monotonic()
            daemon.send_signal(signal.SIGTERM)  # our own child, by pid
            daemon.wait(30)
            exits[watch] = time.monotonic() - stopping
    finally:
        for proc in [*daemons.values(), bare]:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return {
        "incidents": incidents,
        "seconds": wall,
        "cpu_s": {name: after[name][0] - before[name][0] for name in pids},
        "wakeups_per_s": {name: (after[name][1] - before[name][1]) / wall for name in pids},
        "sigterm_to_exit_s": exits,
    }


def replan_cpu(root: Path, reps: int = 3) -> float:
    """CPU seconds of one safety-net re-plan (``Editor.run`` with nothing due) on the store
    a daemon left behind, in this process: median of ``reps``."""
    config = load_config(root / "config.toml")
    app = build(config, dry_run=True, out=io.StringIO())
    try:
        times = []
        for _ in range(reps):
            t0 = time.process_time()
            recorded, _ = app.editor.run(utcnow())
            times.append(time.process_time() - t0)
            assert not recorded, "nothing should be due while idle"
    finally:
        app.close()
    return sorted(times)[len(times) // 2]


def main(argv: list[str] | None = None) -> Result:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--incidents", type=int, help="open incidents (default 1000; quick 50)")
    p.add_argument("--seconds", type=float, help="idle window per mode (default 60; quick 3)")
    p.add_argument("--modes", default="auto,poll", help="watch modes (default: %(default)s)")
    args = p.parse_args(argv)
    started = time.perf_counter()
    incidents = args.incidents or (50 if args.quick else 1000)
    seconds = args.seconds or (3.0 if args.quick else 60.0)
    result = Result("idle", args.quick)
    watches = [m for m in args.modes.split(",") if m]
    with tempfile.TemporaryDirectory() as tmp:
        data = measure(Path(tmp), watches, incidents, seconds)
        replan = replan_cpu(Path(tmp) / watches[0])
    result.details.update(data)
    # The window may hold no safety-net re-plan (every REPLAN_EVERY): add its share.
    every = REPLAN_EVERY.total_seconds()
    share = replan * data["seconds"] / every
    result.details["replan_cpu_s"] = replan
    result.details["replan_every_s"] = every
    bare_cpu = data["cpu_s"]["bare"]
    for watch in watches:
        result.add(
            Figure(
                f"idle CPU, watch = {watch} / bare stat loop (250 ms)",
                ratio(data["cpu_s"][watch], bare_cpu),
                GOAL if watch == "auto" else None,
                data["cpu_s"][watch] * 1000,
                bare_cpu * 1000,
                "ms CPU",
                f"{incidents} open incidents, {data['seconds']:.0f} s",
            )
        )
        if watch == "auto":
            with_replan = data["cpu_s"][watch] + share
            result.add(
                Figure(
                    f"idle CPU + safety-net re-plan share, watch = {watch} / bare stat loop",
                    ratio(with_replan, bare_cpu),
                    GOAL,
                    with_replan * 1000,
                    bare_cpu * 1000,
                    "ms CPU",
                    f"one re-plan {replan * 1000:.0f} ms every {every:.0f} s",
                )
            )
        print(
            f"watch = {watch}: {incidents} open incidents, {data['seconds']:.1f} s idle: "
            f"daemon {data['cpu_s'][watch] * 1000:.1f} ms CPU, "
            f"{data['wakeups_per_s'][watch]:.1f} wake-ups/s; SIGTERM to exit "
            f"{data['sigterm_to_exit_s'][watch] * 1000:.0f} ms"
        )
    print(
        f"bare stat loop: {bare_cpu * 1000:.1f} ms CPU, "
        f"{data['wakeups_per_s']['bare']:.1f} wake-ups/s; one safety-net re-plan "
        f"{replan * 1000:.1f} ms CPU every {every:.0f} s ({share * 1000:.1f} ms per window)"
    )
    finish(result, started, args.json)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
