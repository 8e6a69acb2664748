"""What the proposed fixes to the planning hot spots would gain, measured before they land.

bench/ may not change product code, so each fix is applied here, in this process only, as
the smallest patch that behaves like the proposed change; every variant runs the same
workload as bench_planning.py (opened run + reminder run), interleaved with the unpatched
pipeline in every repetition, and is reported as time(variant) / time(unpatched).

- ``template-cache``: ``Renderer.render`` looks the template up once per (language,
  platform, kind) instead of two ``Path.is_file()`` stats, path arithmetic and a Jinja2
  cache lookup per post (render.py ``template_path`` / ``_load``).
- ``count-once``: the Mastodon count of a text is memoised like the X one already is
  (textfit.py ``_mastodon_count``), so ``Editor.compose`` counting the single part that
  ``split`` has just counted costs nothing.
- ``url-prefilter``: X counting skips twitter-text's URL regex when the text has no dot
  between two non-space characters (no domain possible). An upper bound on what a correct
  prefilter could gain: it must still pass X's conformance suite before it is proposed.
- ``one-transaction``: on a *file* store (WAL, synchronous=FULL, as the daemon uses), all
  posts of one ``Editor.run`` are recorded in one transaction instead of one per post,
  i.e. one fsync per plan instead of one per post. Compared with the unpatched file store.

    .venv/bin/python bench/fixes_planning.py           # ~50 s
    .venv/bin/python bench/fixes_planning.py --quick   # < 10 s
"""

from __future__ import annotations

import contextlib
import gc
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any
from unittest import mock

from bench_planning import (
    NOW,
    latest_promise,
    make_config,
    make_editor,
    make_incidents,
    mark_all_sent,
)
from benchlib import Figure, Result, finish, median, parser, ratio

import broadcaster.textfit as textfit
from broadcaster.config import Config
from broadcaster.model import Incident, PlannedPost, Snapshot
from broadcaster.render import Renderer
from broadcaster.store import Store


class TemplateCacheRenderer(Renderer):
    """The proposed render.py change: resolve and load each template once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._templates: dict[tuple[str, str, str], tuple[Path, Any]] = {}

    def reload(self) -> None:
        super().reload()
        self._templates = {}

    def render(self, snapshot: Snapshot, post: PlannedPost, channel: Any, now: Any) -> str:
        key = (channel.language, channel.platform, post.kind.value)
        hit = self._templates.get(key)
        if hit is None:
            path = self.template_path(channel.language, channel.platform, post.kind)
            hit = self._templates[key] = (path, self._load(channel.language, path))
        path, template = hit
        context = self.context(snapshot, post, channel, now)
        return self._render(template, path, context, channel.language)


def count_once() -> contextlib.AbstractContextManager[Any]:
    """``LengthRule.count`` looks ``_mastodon_count`` up in its module at call time."""
    memoised = lru_cache(maxsize=32)(textfit._mastodon_count)
    return mock.patch.object(textfit, "_mastodon_count", memoised)


# A domain needs "label.tld" with no space around the dot.
_DOTTED = re.compile(r"[^\s.]\.[^\s.]")


@contextlib.contextmanager
def url_prefilter() -> Iterator[None]:
    saved = getattr(textfit, "extract_urls_with_indices")  # noqa: B009 - imported there

    def prefiltered(text: str, *args: Any) -> Any:
        return saved(text, *args) if _DOTTED.search(text) else []

    textfit._x_units.cache_clear()  # counts cached without the filter must not leak in
    try:
        with mock.patch.object(textfit, "extract_urls_with_indices", prefiltered):
            yield
    finally:
        textfit._x_units.cache_clear()


@contextlib.contextmanager
def one_transaction(store: Store) -> Iterator[None]:
    """Make ``store.transaction()`` re-entrant and hold one open around the block."""
    original = store.transaction
    depth = 0

    @contextlib.contextmanager
    def reentrant() -> Iterator[Any]:
        nonlocal depth
        if depth:
            yield store._db  # inside the outer transaction already
            return
        with original() as db:
            depth += 1
            try:
                yield db
            finally:
                depth -= 1

    store.transaction = reentrant  # type: ignore[method-assign]
    try:
        with store.transaction():
            yield
    finally:
        del store.transaction


def workload(
    config: Config,
    renderer: Renderer,
    incidents: list[Incident],
    *,
    store_path: str = ":memory:",
    batched: bool = False,
) -> tuple[float, float]:
    """(CPU, wall) seconds for the opened run plus the reminder run, on a fresh store."""
    store = Store(store_path)
    try:
        editor = make_editor(config, store, renderer)
        editor.ingest(incidents, NOW)
        gc.collect()
        cpu = wall = 0.0
        for phase in ("opened", "reminders"):
            if phase == "reminders":
                mark_all_sent(store, NOW)
            at = NOW if phase == "opened" else latest_promise(store)
            c0, w0 = time.process_time(), time.perf_counter()
            if batched:
                with one_transaction(store):
                    editor.run(at)
            else:
                editor.run(at)
            cpu += time.process_time() - c0
            wall += time.perf_counter() - w0
        return cpu, wall
    finally:
        store.close()


def main(argv: list[str] | None = None) -> Result:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--incidents", type=int, help="in-memory variants (default 600)")
    p.add_argument("--file-incidents", type=int, help="file-store variants (default 200)")
    p.add_argument("--reps", type=int, help="repetitions (default 5; quick 2)")
    args = p.parse_args(argv)
    started = time.perf_counter()
    n = args.incidents or (200 if args.quick else 600)
    n_file = args.file_incidents or (50 if args.quick else 200)
    reps = args.reps or (2 if args.quick else 5)
    result = Result("planning-fixes", args.quick)

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        config = make_config(workdir, 2)
        incidents = make_incidents(n)
        plain = Renderer(config.templates_dir, config.timezone)
        cached = TemplateCacheRenderer(config.templates_dir, config.timezone)

        # In memory, the code is all there is: CPU time, which other processes cannot inflate
        # by taking the core. On a file, waiting for fsync is the cost: wall time.
        def in_memory(renderer: Renderer, *patches: Callable[[], Any]) -> Callable[[], float]:
            def run() -> float:
                with contextlib.ExitStack() as stack:
                    for patch in patches:
                        stack.enter_context(patch())
                    return workload(config, renderer, incidents)[0]

            return run

        variants: dict[str, Callable[[], float]] = {
            "unpatched": in_memory(plain),
            "template-cache": in_memory(cached),
            "count-once": in_memory(plain, count_once),
            "url-prefilter": in_memory(plain, url_prefilter),
            "all three": in_memory(cached, count_once, url_prefilter),
        }
        counter = iter(range(1_000_000))

        def on_file(batched: bool) -> Callable[[], float]:
            def run() -> float:
                path = workdir / f"store-{next(counter)}.sqlite3"
                return workload(
                    config, plain, incidents[:n_file], store_path=str(path), batched=batched
                )[1]

            return run

        file_variants = {
            "memory store": lambda: workload(config, plain, incidents[:n_file])[1],
            "file store": on_file(False),
            "file, one transaction": on_file(True),
        }
        workload(config, plain, incidents[:50])  # warm-up: templates, regex caches
        workload(config, cached, incidents[:50])
        times: dict[str, list[float]] = {name: [] for name in [*variants, *file_variants]}
        for _ in range(reps):  # interleaved: every variant sees the same noise
            for name, run in [*variants.items(), *file_variants.items()]:
                times[name].append(run())

    base = median(times["unpatched"])
    for name in ("template-cache", "count-once", "url-prefilter", "all three"):
        t = median(times[name])
        result.add(
            Figure(f"{name} / unpatched", ratio(t, base), None, t, base, "s CPU", f"{n} incidents")
        )
    mem, disk, one = (median(times[k]) for k in file_variants)
    result.add(
        Figure(
            "file store / memory store",
            ratio(disk, mem),
            None,
            disk,
            mem,
            "s wall",
            f"{n_file} incidents",
        )
    )
    result.add(Figure("one transaction / file store", ratio(one, disk), None, one, disk, "s wall"))
    result.details = {
        "incidents": n,
        "file_incidents": n_file,
        "reps": reps,
        "seconds": {k: [round(x, 3) for x in v] for k, v in times.items()},
    }
    finish(result, started, args.json)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
