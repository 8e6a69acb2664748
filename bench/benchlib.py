"""Shared helpers for the benchmarks in this directory.

The machine these run on has two noisy, shared cores, so no absolute figure means much on
its own: every benchmark measures a baseline in the same run and reports a ratio, with the
absolute numbers beside it for context. The helpers here keep that uniform: robust
statistics, one JSON result shape that ``run_all.py`` can tabulate, sandbox servers in a
separate process (so their CPU never counts as the client's), and config files for the
daemon.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "message_templates"
# Where the benchmarks' own `broadcaster` comes from: this checkout, not an installed copy.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

LOOPBACK = "127.0.0.1"
# Nothing but loopback resolves, here and in every daemon started with ``child_env``.
GUARD = Path(__file__).resolve().parent / "guard"
_spec = importlib.util.spec_from_file_location("bench_loopback_guard", GUARD / "sitecustomize.py")
assert _spec is not None and _spec.loader is not None
_spec.loader.exec_module(importlib.util.module_from_spec(_spec))
# Only loopback is ever talked to: make sure no proxy from the environment gets in the way
# (requests would otherwise send sandbox traffic to an HTTP(S)_PROXY). Inherited by every
# subprocess the benchmarks start.
for _name in ("NO_PROXY", "no_proxy"):
    os.environ[_name] = ",".join(x for x in (os.environ.get(_name), LOOPBACK, "localhost") if x)


# -- statistics ------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile: with 20 samples p95 is the 19th, a real observation."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else math.inf


# -- results ---------------------------------------------------------------------------------


@dataclass
class Figure:
    """One reported number: a ratio against an in-run baseline, with its absolutes."""

    name: str
    ratio: float
    goal: float | None  # the ratio must stay at or under this; None: no goal, for context
    value: float  # the measured thing, in ``unit``
    baseline: float  # the baseline, in ``unit``
    unit: str
    note: str = ""
    # Some goals are absolute ("median ≤ 0.5 s"): then ``value`` must stay at or under this.
    value_goal: float | None = None

    @property
    def verdict(self) -> str:
        checks = []
        if self.goal is not None:
            checks.append(self.ratio <= self.goal)
        if self.value_goal is not None:
            checks.append(self.value <= self.value_goal)
        if not checks:
            return "-"
        return "ok" if all(checks) else "MISSED"


@dataclass
class Result:
    bench: str
    quick: bool
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure

    def to_json(self) -> dict[str, Any]:
        return {
            "bench": self.bench,
            "quick": self.quick,
            "seconds": round(self.seconds, 2),
            "figures": [{**asdict(f), "verdict": f.verdict} for f in self.figures],
            "details": self.details,
        }


def format_table(figures: Sequence[Figure]) -> str:
    rows = [("figure", "ratio", "goal", "value", "baseline", "unit", "")]
    for f in figures:
        rows.append(
            (
                f.name,
                f"{f.ratio:.2f}",
                "-" if f.goal is None else f"≤ {f.goal:g}",
                _num(f.value) + ("" if f.value_goal is None else f" (≤ {f.value_goal:g})"),
                _num(f.baseline),
                f.unit,
                "" if f.verdict == "-" else f.verdict,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def _num(x: float) -> str:
    if math.isnan(x) or math.isinf(x):
        return str(x)
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.4f}"


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="small sizes, under 10 s (for tests)")
    p.add_argument("--json", metavar="FILE", help="also write the result as JSON to FILE")
    return p


def finish(result: Result, started: float, json_path: str | None) -> None:
    result.seconds = time.perf_counter() - started
    print(format_table(result.figures))
    print(f"({result.bench}: {result.seconds:.1f} s{', quick' if result.quick else ''})")
    if json_path:
        Path(json_path).write_text(json.dumps(result.to_json(), indent=2) + "\n")


# -- sandbox servers in their own process ----------------------------------------------------

# Far above anything a benchmark sends: a 429 would measure the pause, not the code.
NO_LIMIT = 1_000_000


@dataclass(frozen=True)
class SandboxSpec:
    x_accounts: int = 1
    mastodon_accounts: int = 1
    latency: float = 0.0  # seconds added to every posting request, on both servers


def x_account(i: int) -> Any:
    from broadcaster.sandbox import DEFAULT_X_ACCOUNT, XAccount

    if i == 0:
        return DEFAULT_X_ACCOUNT
    return XAccount(
        consumer_key=DEFAULT_X_ACCOUNT.consumer_key,  # one app, several users
        consumer_secret=DEFAULT_X_ACCOUNT.consumer_secret,
        access_token=f"{1500000000000000001 + i}-benchaccesstoken{i}",
        access_token_secret=f"bench-access-token-secret-{i}",
        user_id=str(1500000000000000001 + i),
        username=f"bench_x_{i}",
    )


def mastodon_account(i: int) -> Any:
    from broadcaster.sandbox import DEFAULT_MASTODON_ACCOUNT, MastodonAccount

    if i == 0:
        return DEFAULT_MASTODON_ACCOUNT
    return MastodonAccount(
        access_token=f"bench-mastodon-token-{i}",
        username=f"bench_m_{i}",
        id=str(109000000000000001 + i),
    )


def serve_sandboxes(spec: SandboxSpec) -> None:
    """Sandbox process: start both servers, print their URLs, answer queries until told.

    One JSON object per line both ways on stdin/stdout: ``{"command": ..., "arg": ...}`` in,
    the answer out. EOF on stdin (the benchmark died) stops the servers too.
    """
    from broadcaster.sandbox import Faults, MastodonSandbox, XSandbox

    faults = Faults(seed=1)
    faults.configure(latency=spec.latency)
    x = XSandbox(
        accounts=[x_account(i) for i in range(spec.x_accounts)],
        faults=faults,
        post_limit=NO_LIMIT,
        daily_post_limit=NO_LIMIT,
        endpoint_limits={
            "GET /2/users/me": NO_LIMIT,
            "GET /2/users/:id/tweets": NO_LIMIT,
            "GET /2/tweets/:id": NO_LIMIT,
            "DELETE /2/tweets/:id": NO_LIMIT,
        },
    )
    m = MastodonSandbox(
        accounts=[mastodon_account(i) for i in range(spec.mastodon_accounts)],
        faults=faults,
        request_limit=NO_LIMIT,
        status_limit=NO_LIMIT,
    )

    def answer(value: Any) -> None:
        sys.stdout.write(json.dumps(value) + "\n")
        sys.stdout.flush()

    with x, m:
        answer({"x": x.base_url, "mastodon": m.base_url})
        for line in sys.stdin:
            request = json.loads(line)
            command, arg = request["command"], request.get("arg")
            if command == "stop":
                answer(None)
                return
            if command == "posts":  # [platform, account, text, created_at, in_reply_to]
                rows = [["x", p.account, p.text, p.created_at, p.in_reply_to] for p in x.posts()]
                rows += [
                    ["mastodon", p.account, p.text, p.created_at, p.in_reply_to] for p in m.posts()
                ]
                answer(rows)
            elif command == "count":
                answer(len(x.posts()) + len(m.posts()))
            elif command == "latency":
                faults.configure(latency=float(arg))
                answer(None)
            elif command == "errors":  # non-2xx answers seen: a benchmark must see none
                answer(
                    [
                        [r.method, r.path, r.status]
                        for r in x.requests_log() + m.requests_log()
                        if r.status is None or r.status >= 300
                    ]
                )
            else:
                answer({"error": f"unknown command {command!r}"})


class Sandboxes:
    """X and Mastodon sandboxes in a child process (this file run as a script); JSON lines
    over its stdin/stdout carry the URLs and the queries."""

    def __init__(self, spec: SandboxSpec) -> None:
        self.spec = spec
        self._proc: subprocess.Popen[str] | None = None
        self.x_url = ""
        self.mastodon_url = ""

    def __enter__(self) -> Sandboxes:
        self._proc = subprocess.Popen(
            [sys.executable, __file__, "serve-sandboxes", json.dumps(asdict(self.spec))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        urls = self._receive()
        self.x_url, self.mastodon_url = urls["x"], urls["mastodon"]
        return self

    def __exit__(self, *exc: object) -> None:
        proc = self._proc
        if proc is None:
            return
        with suppress(OSError, ValueError, RuntimeError):  # it may be gone already
            self.call("stop")
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()  # our own child, by handle
            proc.wait()

    def _receive(self) -> Any:
        assert self._proc is not None and self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError("the sandbox process exited")
        return json.loads(line)

    def call(self, command: str, arg: Any = None) -> Any:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(json.dumps({"command": command, "arg": arg}) + "\n")
        self._proc.stdin.flush()
        answer = self._receive()
        if isinstance(answer, dict) and "error" in answer:
            raise ValueError(answer["error"])
        return answer

    def posts(self) -> list[tuple[str, str, str, float, str | None]]:
        return [(p, a, t, float(at), r) for p, a, t, at, r in self.call("posts")]

    def count(self) -> int:
        return int(self.call("count"))

    def set_latency(self, seconds: float) -> None:
        self.call("latency", seconds)

    def errors(self) -> list[tuple[str, str, int | None]]:
        return [(method, path, status) for method, path, status in self.call("errors")]


# -- clients as the bare libraries are used ---------------------------------------------------


def bare_tweepy(base_url: str, account: Any, timeout: float = 10.0) -> Any:
    """A plain ``tweepy.Client`` for the sandbox, as tests/sandbox_fixtures.py builds it."""
    import tweepy

    from broadcaster.channels.transport import configure_session

    client = tweepy.Client(
        consumer_key=account.consumer_key,
        consumer_secret=account.consumer_secret,
        access_token=account.access_token,
        access_token_secret=account.access_token_secret,
    )
    configure_session(client.session, base_url, timeout)
    return client


def bare_mastodon(base_url: str, account: Any, timeout: float = 10.0) -> Any:
    import mastodon

    return mastodon.Mastodon(
        api_base_url=base_url,
        access_token=account.access_token,
        ratelimit_method="throw",
        request_timeout=timeout,
        version_check_mode="none",
    )


# -- daemon configuration ---------------------------------------------------------------------


def config_header(
    *,
    state_file: str = "state.toml",
    poll_interval: str | None = None,
    cadence: str = "1h",
    watch: str | None = None,
) -> str:
    """``[broadcaster]`` and ``[cadence]``; a long cadence keeps reminders out of the way.
    ``watch``: "auto" (the default: notifications) or "poll"."""
    poll = f'poll_interval = "{poll_interval}"\n' if poll_interval else ""
    if watch:
        poll += f'watch = "{watch}"\n'
    return (
        "[broadcaster]\n"
        f'state_file = "{state_file}"\n'
        'data_dir = "data"\n'
        f'templates_dir = "{TEMPLATES}"\n'
        'timezone = "Europe/Paris"\n'
        f"{poll}\n"
        "[cadence]\n"
        f'investigating = "{cadence}"\n'
        f'identified = "{cadence}"\n'
        f'monitoring = "{cadence}"\n'
        f'long_incident_interval = "{cadence}"\n'
    )


def x_channel_toml(name: str, language: str, base_url: str, account: Any) -> str:
    return (
        f"\n[channels.{name}]\n"
        'platform = "x"\n'
        f'language = "{language}"\n'
        f'api_base_url = "{base_url}"\n'
        f'consumer_key = "{account.consumer_key}"\n'
        f'consumer_secret = "{account.consumer_secret}"\n'
        f'access_token = "{account.access_token}"\n'
        f'access_token_secret = "{account.access_token_secret}"\n'
    )


def mastodon_channel_toml(name: str, language: str, base_url: str, account: Any) -> str:
    return (
        f"\n[channels.{name}]\n"
        'platform = "mastodon"\n'
        f'language = "{language}"\n'
        f'api_base_url = "{base_url}"\n'
        f'access_token = "{account.access_token}"\n'
    )


# -- small utilities --------------------------------------------------------------------------


@contextmanager
def cpu_and_wall() -> Iterator[dict[str, float]]:
    """``process_time`` (every thread of this process) and ``perf_counter`` for a block."""
    out: dict[str, float] = {}
    c0, w0 = time.process_time(), time.perf_counter()
    try:
        yield out
    finally:
        out["cpu"] = time.process_time() - c0
        out["wall"] = time.perf_counter() - w0


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.005)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def child_env() -> dict[str, str]:
    """Environment for daemon subprocesses: this checkout first on the import path, and the
    loopback-only guard (``guard/sitecustomize.py``) loaded at their start."""
    env = dict(os.environ)
    paths = (str(GUARD), str(ROOT), env.get("PYTHONPATH"))
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


if __name__ == "__main__":
    # ``python bench/benchlib.py serve-sandboxes SPEC``: the sandbox process of Sandboxes.
    if len(sys.argv) == 3 and sys.argv[1] == "serve-sandboxes":
        serve_sandboxes(SandboxSpec(**json.loads(sys.argv[2])))
    else:
        sys.exit("usage: benchlib.py serve-sandboxes SPEC_JSON")
