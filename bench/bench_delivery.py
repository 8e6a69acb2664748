"""Delivery to X and Mastodon: client CPU per post, and fan-out over many channels.

Both parts post for real, over HTTP, to the local X and Mastodon sandboxes, which run in a
separate process so that their CPU never counts as ours; nothing leaves 127.0.0.1. Every
rate limit of the sandboxes is raised far above what is sent: a 429 would measure a pause.
The pipeline is the daemon's own machinery, built by ``broadcaster.app.build`` from a
config file (real ``XChannel`` / ``MastodonChannel``, file store in WAL with
synchronous=FULL, one delivery worker thread per channel), driven without the scheduler.

(a) ``cpu``: client CPU per delivered post. Incidents open (one post per channel), then
    each gets an update (a reply in its thread); the pipeline plans, renders, records in the
    outbox and delivers them, and ``time.process_time`` (all threads of this process)
    measures it from ingest to the last confirmation. Baseline: the bare libraries,
    ``tweepy.Client.create_tweet`` and ``Mastodon.status_post``, posting the same texts with
    the same reply structure, from the same process, to other accounts of the same
    sandboxes. Goal: pipeline / bare ≤ 1.2.

(b) ``fanout``: 10 channels (5 X accounts, 5 Mastodon accounts) and a burst of 20 posts
    each (200 posts), with ``--latency`` (default 30 ms) added by the sandboxes to every
    posting request so that waiting on the network is what parallel workers can hide.
    Measured: wall time of the daemon's delivery (all workers) from the wake-up to the last
    confirmation. Baseline: the bare libraries posting the same 200 texts one after another.
    Goal: pipeline / bare ≤ 0.4.

    .venv/bin/python bench/bench_delivery.py            # ~40 s
    .venv/bin/python bench/bench_delivery.py --quick    # < 10 s
    .venv/bin/python bench/bench_delivery.py --part fanout --latency 0.05
"""

from __future__ import annotations

import gc
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchlib import (
    Figure,
    Result,
    Sandboxes,
    SandboxSpec,
    bare_mastodon,
    bare_tweepy,
    config_header,
    cpu_and_wall,
    finish,
    mastodon_account,
    mastodon_channel_toml,
    median,
    parser,
    ratio,
    x_account,
    x_channel_toml,
)

from broadcaster.app import App, build
from broadcaster.config import load_config
from broadcaster.model import Incident, Localized, OutboxPost
from broadcaster.store import Store

GOAL_CPU = 1.2
GOAL_FANOUT = 0.4


@dataclass(frozen=True)
class ChannelSpec:
    name: str
    platform: str  # "x" or "mastodon"
    language: str
    account: int  # index into the sandbox's accounts (benchlib.x_account / mastodon_account)


class Pipeline:
    """The daemon's app (channels, store, editor, workers) from a real config file."""

    def __init__(
        self,
        workdir: Path,
        sandboxes: Sandboxes,
        channels: list[ChannelSpec],
        store: Store | None = None,
    ) -> None:
        text = config_header()
        for c in channels:
            if c.platform == "x":
                text += x_channel_toml(c.name, c.language, sandboxes.x_url, x_account(c.account))
            else:
                text += mastodon_channel_toml(
                    c.name, c.language, sandboxes.mastodon_url, mastodon_account(c.account)
                )
        workdir.mkdir(parents=True, exist_ok=True)
        path = workdir / "config.toml"
        path.write_text(text)
        # store=None: the daemon's own file store (WAL, synchronous=FULL) under workdir.
        self.app: App = build(load_config(path), dry_run=False, store=store)
        self._sent = 0
        self._target = 0
        self._lock = threading.Lock()
        self._done = threading.Event()
        for worker in self.app.delivery.workers.values():
            worker.on_sent = self._on_sent  # the hook delivery offers; build() leaves it unset
        self.app.delivery.start()

    def _on_sent(self, post: OutboxPost, remote_id: str) -> None:
        # Wake the waiting benchmark once, at the target: a wake-up per post would add a
        # thread switch per post that the daemon, with nobody waiting, does not pay.
        with self._lock:
            self._sent += 1
            if self._sent >= self._target:
                self._done.set()

    @property
    def sent(self) -> int:
        with self._lock:
            return self._sent

    def plan(self, incidents: list[Incident], now: datetime) -> int:
        """Ingest and record what is due; returns the number of parts to deliver."""
        self.app.editor.ingest(incidents, now)
        recorded, _ = self.app.editor.run(now)
        return sum(len(r.keys) for r in recorded)

    def deliver(self, target: int, timeout: float = 60.0) -> None:
        """Wake every worker and wait until ``target`` posts in all have been confirmed."""
        with self._lock:
            self._target = target
            if self._sent >= target:
                return
            self._done.clear()
        self.app.delivery.wake()
        if not self._done.wait(timeout):
            failed = [
                (p.key, p.state.value, p.last_error)
                for p in self.app.store.posts()
                if p.state.value != "sent"
            ][:5]
            raise TimeoutError(f"{self.sent}/{target} posts confirmed; e.g. {failed}")

    def posts_of(self, incident_ids: set[str]) -> list[OutboxPost]:
        return [p for p in self.app.store.posts() if p.incident_id in incident_ids]

    def close(self) -> None:
        self.app.close()


def incidents(tag: str, n: int, *, update: bool = False) -> list[Incident]:
    """``n`` open incidents; ``update`` gives each a new message (one reply per channel)."""
    started = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    step = "Racks restart room by room" if update else "Teams are on site"
    step_fr = "Les baies redémarrent salle par salle" if update else "Les équipes sont sur place"
    return [
        Incident(
            id=f"{tag}-{i:03d}",
            title=Localized({"en": f"Storage outage {tag}/{i}", "fr": f"Panne {tag}/{i}"}),
            status="identified" if update else "investigating",
            severity=("minor", "major", "critical")[i % 3],
            started_at=started,
            services=("Object Storage",),
            regions=("SBG",),
            message=Localized({"en": step, "fr": step_fr}),
        )
        for i in range(n)
    ]


# -- the bare libraries ----------------------------------------------------------------------


class Bare:
    """One plain client per account, posting texts in the order given, replies included."""

    def __init__(self, sandboxes: Sandboxes, accounts: dict[str, tuple[str, int]]) -> None:
        # channel name -> (platform, bare account index)
        self.clients: dict[str, tuple[str, Any]] = {}
        for channel, (platform, index) in accounts.items():
            if platform == "x":
                client = bare_tweepy(sandboxes.x_url, x_account(index))
            else:
                client = bare_mastodon(sandboxes.mastodon_url, mastodon_account(index))
            self.clients[channel] = (platform, client)

    def post(self, posts: list[OutboxPost]) -> int:
        """Post each text to its channel's bare account; a reply replies to the bare copy of
        its parent. Returns the number posted."""
        remote: dict[str, str] = {}  # pipeline key -> id of the bare copy
        for post in posts:
            platform, client = self.clients[post.channel]
            parent = remote.get(post.reply_to_key) if post.reply_to_key else None
            if platform == "x":
                response = client.create_tweet(text=post.text, in_reply_to_tweet_id=parent)
                remote[post.key] = str(response.data["id"])
            else:
                status = client.status_post(post.text, in_reply_to_id=parent)
                remote[post.key] = str(status["id"])
        return len(posts)

    def close(self) -> None:
        for platform, client in self.clients.values():
            client.session.close()
            del platform


# -- (a) client CPU per post -----------------------------------------------------------------


# Accounts of each sandbox: 0-4 fan-out pipeline, 5-9 fan-out baseline, 10 and 11 cpu.
ACCOUNTS = 12


def part_cpu(result: Result, sandboxes: Sandboxes, workdir: Path, reps: int, n: int) -> None:
    channels = [
        ChannelSpec("x-en", "x", "en", 10),
        ChannelSpec("mastodon-fr", "mastodon", "fr", 10),
    ]
    sandboxes.set_latency(0.0)
    pipeline = Pipeline(workdir / "cpu", sandboxes, channels)
    bare = Bare(sandboxes, {"x-en": ("x", 11), "mastodon-fr": ("mastodon", 11)})
    pipe_cpu: list[float] = []
    bare_cpu: list[float] = []
    pipe_wall: list[float] = []
    bare_wall: list[float] = []
    posts_per_rep = 0
    try:
        for rep in range(reps + 1):  # repetition 0 warms up connections and templates
            tag = f"c{rep}"
            now = datetime.now(UTC)
            gc.collect()
            with cpu_and_wall() as pipe:
                target = pipeline.sent + pipeline.plan(incidents(tag, n), now)
                pipeline.deliver(target)
                later = now + timedelta(seconds=1)
                target += pipeline.plan(incidents(tag, n, update=True), later)
                pipeline.deliver(target)
            posts = pipeline.posts_of({i.id for i in incidents(tag, n)})
            gc.collect()
            with cpu_and_wall() as plain:
                bare.post(posts)
            if rep == 0:
                continue
            posts_per_rep = len(posts)
            pipe_cpu.append(pipe["cpu"] / len(posts))
            bare_cpu.append(plain["cpu"] / len(posts))
            pipe_wall.append(pipe["wall"] / len(posts))
            bare_wall.append(plain["wall"] / len(posts))
    finally:
        bare.close()
        pipeline.close()

    cpu_p, cpu_b = median(pipe_cpu), median(bare_cpu)
    result.add(
        Figure(
            "cpu: pipeline / bare libraries, per post",
            ratio(cpu_p, cpu_b),
            GOAL_CPU,
            cpu_p * 1000,
            cpu_b * 1000,
            "ms CPU",
            f"{posts_per_rep} posts x {reps} reps",
        )
    )
    result.add(
        Figure(
            "cpu: wall per post (context)",
            ratio(median(pipe_wall), median(bare_wall)),
            None,
            median(pipe_wall) * 1000,
            median(bare_wall) * 1000,
            "ms",
        )
    )
    result.details["cpu"] = {
        "posts_per_rep": posts_per_rep,
        "reps": reps,
        "pipeline_cpu_ms_per_post": [round(x * 1000, 3) for x in pipe_cpu],
        "bare_cpu_ms_per_post": [round(x * 1000, 3) for x in bare_cpu],
    }


# -- (b) fan-out -----------------------------------------------------------------------------


def part_fanout(
    result: Result,
    sandboxes: Sandboxes,
    workdir: Path,
    reps: int,
    per_channel: int,
    latency: float,
) -> None:
    channels = [ChannelSpec(f"x-{i}", "x", ("en", "fr")[i % 2], i) for i in range(5)] + [
        ChannelSpec(f"mastodon-{i}", "mastodon", ("en", "fr")[i % 2], i) for i in range(5)
    ]
    sandboxes.set_latency(latency)  # the same for the pipeline and the baseline
    pipeline = Pipeline(workdir / "fanout", sandboxes, channels)
    # Accounts 5-9 of each sandbox receive the baseline's copies.
    bare = Bare(sandboxes, {c.name: (c.platform, c.account + 5) for c in channels})
    deliver_wall: list[float] = []
    end_to_end: list[float] = []
    bare_wall: list[float] = []
    cpu: list[float] = []
    bare_cpu: list[float] = []
    total = 0
    try:
        for rep in range(reps + 1):  # repetition 0 warms up connections and templates
            tag = f"f{rep}"
            burst = incidents(tag, per_channel)
            gc.collect()
            with cpu_and_wall() as planning:
                target = pipeline.sent + pipeline.plan(burst, datetime.now(UTC))
            with cpu_and_wall() as delivery:
                pipeline.deliver(target)
            posts = pipeline.posts_of({i.id for i in burst})
            gc.collect()
            with cpu_and_wall() as plain:
                bare.post(posts)
            if rep == 0:
                continue
            total = len(posts)
            deliver_wall.append(delivery["wall"])
            end_to_end.append(planning["wall"] + delivery["wall"])
            bare_wall.append(plain["wall"])
            cpu.append(planning["cpu"] + delivery["cpu"])
            bare_cpu.append(plain["cpu"])
    finally:
        bare.close()
        pipeline.close()

    d, b = median(deliver_wall), median(bare_wall)
    result.add(
        Figure(
            "fanout: delivery wall / bare sequential",
            ratio(d, b),
            GOAL_FANOUT,
            d,
            b,
            "s",
            f"{total} posts, 10 channels, +{latency * 1000:.0f} ms/post",
        )
    )
    e = median(end_to_end)
    result.add(Figure("fanout: plan+delivery wall / bare", ratio(e, b), None, e, b, "s", "context"))
    result.details["fanout"] = {
        "posts": total,
        "reps": reps,
        "latency_s": latency,
        "delivery_wall_s": [round(x, 3) for x in deliver_wall],
        "plan_and_delivery_wall_s": [round(x, 3) for x in end_to_end],
        "bare_wall_s": [round(x, 3) for x in bare_wall],
        "pipeline_cpu_s": [round(x, 3) for x in cpu],
        "bare_cpu_s": [round(x, 3) for x in bare_cpu],
        "ideal_wall_s": per_channel * latency,  # 10 workers, no CPU cost at all
    }


def main(argv: list[str] | None = None) -> Result:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--part", choices=("both", "cpu", "fanout"), default="both")
    p.add_argument("--latency", type=float, default=0.03, help="fan-out server latency, s")
    p.add_argument("--reps", type=int, help="repetitions (default 5 cpu / 3 fan-out)")
    args = p.parse_args(argv)
    started = time.perf_counter()
    result = Result("delivery", args.quick)
    spec = SandboxSpec(x_accounts=ACCOUNTS, mastodon_accounts=ACCOUNTS)
    with tempfile.TemporaryDirectory() as tmp, Sandboxes(spec) as sandboxes:
        if args.part in ("both", "cpu"):
            reps = args.reps or (2 if args.quick else 5)
            part_cpu(result, sandboxes, Path(tmp), reps, 10 if args.quick else 40)
        if args.part in ("both", "fanout"):
            reps = args.reps or (1 if args.quick else 3)
            part_fanout(result, sandboxes, Path(tmp), reps, 5 if args.quick else 20, args.latency)
        errors = sandboxes.errors()
    result.details["non_2xx_answers"] = errors[:10]
    if errors:  # a retry or a pause would be measured instead of the code
        print(f"warning: the sandboxes answered {len(errors)} requests with errors: {errors[:5]}")
    finish(result, started, args.json)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
