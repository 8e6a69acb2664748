"""Run every benchmark and print one summary table.

Each benchmark runs in its own subprocess (a fresh interpreter: no warm caches carried
from one to the next, no threads left behind) and writes its result as JSON; this script
collects them. Every figure is a ratio against a baseline measured in the same run.

    .venv/bin/python bench/run_all.py                  # every benchmark, ~5 min
    .venv/bin/python bench/run_all.py --quick          # each under 10 s
    .venv/bin/python bench/run_all.py --markdown       # the table for bench/README.md
    .venv/bin/python bench/run_all.py --only latency --strict   # exit 1 if a goal is missed
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BENCHES = {
    "planning": "bench_planning.py",
    "latency": "bench_latency.py",
    "delivery": "bench_delivery.py",
    "intake": "bench_intake.py",
    "instances": "bench_instances.py",
    "idle": "bench_idle.py",
    "scale": "bench_scale.py",
}


def run(script: str, quick: bool, out: Path) -> tuple[dict[str, Any] | None, str]:
    command = [sys.executable, str(HERE / script), "--json", str(out)]
    if quick:
        command.append("--quick")
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not out.exists():
        return None, proc.stdout + proc.stderr
    return json.loads(out.read_text()), proc.stdout


def fmt(x: float) -> str:
    if x is None or (isinstance(x, float) and (math.isnan(x) or math.isinf(x))):
        return str(x)
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.4f}"


def rows(results: list[dict[str, Any]]) -> list[list[str]]:
    table = []
    for r in results:
        for f in r["figures"]:
            goal = [f"ratio ≤ {f['goal']:g}"] if f["goal"] is not None else []
            if f.get("value_goal") is not None:
                goal.append(f"value ≤ {f['value_goal']:g}")
            table.append(
                [
                    r["bench"],
                    f["name"],
                    f"{f['ratio']:.2f}",
                    ", ".join(goal) or "-",
                    fmt(f["value"]),
                    fmt(f["baseline"]),
                    f["unit"],
                    f["verdict"] if f["verdict"] != "-" else "",
                ]
            )
    return table


HEADER = ["bench", "figure", "ratio", "goal", "value", "baseline", "unit", "verdict"]


def text_table(table: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [HEADER, *table]) for i in range(len(HEADER))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in table]
    head = "  ".join(c.ljust(w) for c, w in zip(HEADER, widths, strict=True))
    rule = "  ".join("-" * w for w in widths)
    return "\n".join(line.rstrip() for line in [head, rule, *lines])


def markdown_table(table: list[list[str]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in table]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="every benchmark in its quick mode")
    p.add_argument("--only", choices=[*BENCHES], action="append", help="repeatable")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.add_argument("--json", metavar="FILE", help="write all results to FILE")
    p.add_argument("--strict", action="store_true", help="exit 1 if any goal is missed")
    args = p.parse_args(argv)

    chosen = dict(BENCHES)
    if args.only:
        chosen = {name: BENCHES[name] for name in args.only}

    results: list[dict[str, Any]] = []
    failed: list[str] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name, script in chosen.items():
            t0 = time.perf_counter()
            print(f"running {script}{' --quick' if args.quick else ''} ...", flush=True)
            result, output = run(script, args.quick, Path(tmp) / f"{name}.json")
            if result is None:
                failed.append(name)
                print(f"{name} FAILED:\n{output[-4000:]}", file=sys.stderr)
                continue
            results.append(result)
            print(f"  done in {time.perf_counter() - t0:.1f} s", flush=True)

    table = rows(results)
    cores = os.cpu_count()
    print()
    print(
        f"{date.today().isoformat()} · {platform.python_implementation()} "
        f"{platform.python_version()} · {cores} cores · "
        f"{'quick' if args.quick else 'full'} run in {time.perf_counter() - started:.0f} s"
    )
    print(markdown_table(table) if args.markdown else text_table(table))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    missed = [row for row in table if row[-1] == "MISSED"]
    if failed:
        return 2
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
