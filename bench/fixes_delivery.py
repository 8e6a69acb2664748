"""What the proposed fixes to the delivery CPU hot spots would gain, measured before they land.

Same workload as ``bench_delivery.py --part cpu`` (incidents open, then each gets an
update, on an X and a Mastodon channel), with each proposed fix applied here, in this
process only, as the smallest patch that behaves like it. Two measurements:

1. ``overhead``: the pipeline's own CPU per post (plan, render, fit, outbox, delivery
   bookkeeping) with a channel that publishes nothing: no HTTP, no sandbox, so the few
   percent a fix saves are not lost in the noise of the network stack. Reported as
   variant / unpatched.
2. ``end to end``: the real channels against the sandboxes (in their own process), every
   repetition running the variants and the bare libraries interleaved, as
   CPU per post / the bare libraries' CPU per post (the goal is ≤ 1.3).

- ``one-transaction``: ``Editor.run`` records all its posts in one transaction (one fsync
  per plan instead of one per post): store.py ``transaction`` made re-entrant, editor.py
  ``run`` holding one open.
- ``sent-rides-along``: ``mark_sent`` commits without its own fsync (WAL with
  synchronous=NORMAL for that one statement); the next FULL commit (the next post's
  ``mark_sending``, or the next plan) makes it durable. A power cut in between leaves the
  post ``sending``, which delivery already resolves by looking it up before re-sending.
- ``planning fixes``: the template-lookup cache and count-once of fixes_planning.py.
- ``memory store``: no fsync at all: the bound on what durability costs (not a proposal).

    .venv/bin/python bench/fixes_delivery.py           # ~30 s
    .venv/bin/python bench/fixes_delivery.py --quick   # < 10 s
"""

from __future__ import annotations

import contextlib
import gc
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench_delivery import Bare, ChannelSpec, Pipeline, incidents
from bench_planning import make_config
from benchlib import (
    Figure,
    Result,
    Sandboxes,
    SandboxSpec,
    finish,
    median,
    parser,
    ratio,
)
from fixes_planning import TemplateCacheRenderer, count_once, one_transaction

from broadcaster.app import default_rule
from broadcaster.channels.base import Channel, PublishRequest, PublishResult
from broadcaster.config import Config
from broadcaster.delivery import ChannelWorker
from broadcaster.editor import Editor
from broadcaster.render import Renderer
from broadcaster.store import Store
from broadcaster.textfit import LengthRule

GOAL_CPU = 1.3


def sent_rides_along(store: Store) -> None:
    """Patch ``store.mark_sent`` to commit without an fsync of its own."""
    original = store.mark_sent

    def mark_sent(*args: Any, **kwargs: Any) -> None:
        with store._lock:  # the pragma must not leak into another thread's commit
            store._db.execute("PRAGMA synchronous=NORMAL")
            try:
                original(*args, **kwargs)
            finally:
                store._db.execute("PRAGMA synchronous=FULL")

    store.mark_sent = mark_sent  # type: ignore[method-assign]


class NullChannel(Channel):
    """Publishes nothing and answers at once: what is left is the pipeline's own work."""

    def __init__(self, name: str, platform: str, language: str, rule: LengthRule) -> None:
        self.name = name
        self.platform = platform
        self.language = language
        self._rule = rule
        self._count = 0

    def length_rule(self) -> LengthRule:
        return self._rule

    def publish(self, request: PublishRequest) -> PublishResult:
        self._count += 1
        return PublishResult(remote_id=f"null-{self._count}")

    def find_published(self, request: PublishRequest) -> PublishResult | None:
        return None


class Overhead:
    """The daemon's store, editor and workers around null channels, driven in this thread
    (``ChannelWorker.step`` until idle) so that only the pipeline's CPU is measured."""

    def __init__(
        self,
        name: str,
        config: Config,
        store: Store,
        *,
        batched: bool = False,
        rides: bool = False,
        planning_fixes: bool = False,
    ) -> None:
        self.name = name
        self.store = store
        self.batched = batched
        self.planning_fixes = planning_fixes
        if rides:
            sent_rides_along(store)
        renderer_class = TemplateCacheRenderer if planning_fixes else Renderer
        renderer = renderer_class(config.templates_dir, config.timezone)
        rules = {name: default_rule(c) for name, c in config.channels.items()}
        self.editor = Editor(store, renderer, config, rules)
        self.workers = [
            ChannelWorker(NullChannel(name, c.platform, c.language, rules[name]), store)
            for name, c in config.channels.items()
        ]
        self.cpu: list[float] = []

    def _plan_and_deliver(self, batch: list[Any], now: datetime) -> int:
        if self.batched:
            with one_transaction(self.store):
                self.editor.ingest(batch, now)
                recorded, _ = self.editor.run(now)
        else:
            self.editor.ingest(batch, now)
            recorded, _ = self.editor.run(now)
        for worker in self.workers:
            while worker.step() == 0:
                pass
        return sum(len(r.keys) for r in recorded)

    def run(self, tag: str, n: int) -> None:
        with count_once() if self.planning_fixes else contextlib.nullcontext():
            now = datetime.now(UTC)
            gc.collect()
            c0 = time.process_time()
            posts = self._plan_and_deliver(incidents(tag, n), now)
            posts += self._plan_and_deliver(
                incidents(tag, n, update=True), now + timedelta(seconds=1)
            )
            self.cpu.append((time.process_time() - c0) / posts)


def measure_overhead(result: Result, root: Path, reps: int, n: int) -> None:
    config = make_config(root, 2)  # x-en and mastodon-fr, as in the end-to-end part

    def file_store(name: str) -> Store:
        return Store(root / f"overhead-{name}.sqlite3")

    variants = [
        Overhead("unpatched", config, file_store("unpatched")),
        Overhead("one-transaction", config, file_store("batched"), batched=True),
        Overhead("sent-rides-along", config, file_store("rides"), rides=True),
        Overhead("both", config, file_store("both"), batched=True, rides=True),
        Overhead(
            "both + planning fixes",
            config,
            file_store("all"),
            batched=True,
            rides=True,
            planning_fixes=True,
        ),
        Overhead("memory store", config, Store(":memory:")),
    ]
    for rep in range(reps + 1):  # repetition 0 warms every variant up
        shift = rep % len(variants)
        for i, variant in (list(enumerate(variants)) * 2)[shift : shift + len(variants)]:
            variant.run(f"o{i}r{rep}", n if rep else 3)
    base = median(variants[0].cpu[1:])
    for variant in variants[1:]:
        cpu = median(variant.cpu[1:])
        result.add(
            Figure(
                f"overhead: {variant.name} / unpatched",
                ratio(cpu, base),
                None,
                cpu * 1000,
                base * 1000,
                "ms CPU/post",
                "null channel",
            )
        )
    result.details["overhead_ms_per_post"] = {
        v.name: [round(x * 1000, 3) for x in v.cpu[1:]] for v in variants
    }
    for variant in variants:
        variant.store.close()


class Variant:
    def __init__(
        self,
        name: str,
        pipeline: Pipeline,
        *,
        batched: bool = False,
        patches: tuple[Callable[[], contextlib.AbstractContextManager[Any]], ...] = (),
    ) -> None:
        self.name = name
        self.pipeline = pipeline
        self.batched = batched
        self.patches = patches
        self.cpu: list[float] = []

    def plan(self, batch: list[Any], now: datetime) -> int:
        if not self.batched:
            return self.pipeline.plan(batch, now)
        with one_transaction(self.pipeline.app.store):
            return self.pipeline.plan(batch, now)

    def run(self, tag: str, n: int) -> int:
        """Open ``n`` incidents, then update each; returns the number of posts delivered."""
        with contextlib.ExitStack() as stack:
            for patch in self.patches:
                stack.enter_context(patch())
            now = datetime.now(UTC)
            gc.collect()
            c0 = time.process_time()
            target = self.pipeline.sent + self.plan(incidents(tag, n), now)
            self.pipeline.deliver(target)
            target += self.plan(incidents(tag, n, update=True), now + timedelta(seconds=1))
            self.pipeline.deliver(target)
            cpu = time.process_time() - c0
        posts = len(self.pipeline.posts_of({i.id for i in incidents(tag, n)}))
        self.cpu.append(cpu / posts)
        return posts


def main(argv: list[str] | None = None) -> Result:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, help="repetitions (default 5; quick 1)")
    p.add_argument("--incidents", type=int, help="incidents per repetition (default 30)")
    args = p.parse_args(argv)
    started = time.perf_counter()
    reps = args.reps or (1 if args.quick else 5)
    n = args.incidents or (8 if args.quick else 30)
    overhead_n = 10 if args.quick else 50
    result = Result("delivery-fixes", args.quick)
    channels = [
        ChannelSpec("x-en", "x", "en", 0),
        ChannelSpec("mastodon-fr", "mastodon", "fr", 0),
    ]
    spec = SandboxSpec(x_accounts=2, mastodon_accounts=2)
    with tempfile.TemporaryDirectory() as tmp, Sandboxes(spec) as sandboxes:
        root = Path(tmp)

        def pipeline(name: str, store: Store | None = None) -> Pipeline:
            return Pipeline(root / name, sandboxes, channels, store=store)

        measure_overhead(result, root, reps, overhead_n)
        unpatched = pipeline("unpatched")
        everything = pipeline("everything")
        sent_rides_along(everything.app.store)
        config = everything.app.config
        everything.app.editor.renderer = TemplateCacheRenderer(
            config.templates_dir, config.timezone
        )
        memory = pipeline("memory", Store(":memory:"))
        variants = [
            Variant("unpatched", unpatched),
            Variant("both + planning fixes", everything, batched=True, patches=(count_once,)),
            Variant("memory store", memory),
        ]
        bare = Bare(sandboxes, {"x-en": ("x", 1), "mastodon-fr": ("mastodon", 1)})
        bare_cpu: list[float] = []
        try:
            for rep in range(reps + 1):  # repetition 0 warms every variant up
                # A different order each time: no variant always runs first, or last.
                shift = rep % len(variants)
                order = list(enumerate(variants))[shift:] + list(enumerate(variants))[:shift]
                for i, variant in order:
                    variant.run(f"v{i}r{rep}", n if rep else 3)
                posts = unpatched.posts_of({x.id for x in incidents(f"v0r{rep}", n)})
                gc.collect()
                c0 = time.process_time()
                bare.post(posts)
                bare_cpu.append((time.process_time() - c0) / len(posts))
        finally:
            bare.close()
            for variant in variants:
                variant.pipeline.close()
        errors = sandboxes.errors()

    bare_med = median(bare_cpu[1:])
    for variant in variants:
        cpu = median(variant.cpu[1:])
        result.add(
            Figure(
                f"end to end: {variant.name} / bare",
                ratio(cpu, bare_med),
                GOAL_CPU,
                cpu * 1000,
                bare_med * 1000,
                "ms CPU/post",
            )
        )
    result.details |= {
        "reps": reps,
        "incidents": n,
        "cpu_ms_per_post": {v.name: [round(x * 1000, 3) for x in v.cpu[1:]] for v in variants},
        "bare_cpu_ms_per_post": [round(x * 1000, 3) for x in bare_cpu[1:]],
        "non_2xx_answers": errors[:10],
    }
    finish(result, started, args.json)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
