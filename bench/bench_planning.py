"""Planning + rendering throughput with 10,000 open incidents.

What is timed: ``Editor.run(now)`` on an in-memory ``Store`` holding 10,000 open incidents
(statuses, severities, maintenances, one-language and per-language texts, some long enough
to become threads), with the dry-run twins of the channels of ``config.example.toml``:

1. ``opened``: the first run, which plans, renders, fits (counts and splits) and records an
   opening post for every incident on every channel it matches;
2. ``reminders``: a second run at the latest promise, once every opening is marked sent,
   when every thread is owed a reminder;
3. ``idle``: a third run right after, with nothing due (what every save and every 30-second
   re-plan costs at this size), reported in absolute terms.

Baseline, in the same run, measured right after each run on the same data: bare Jinja2,
i.e. ``Template.render(context)`` of the very templates and contexts the pipeline rendered,
as many times (three passes, median). ``pipeline / bare Jinja2`` is the price of
everything around the template engine (planning, context building, template lookup,
typography, counting, splitting, SQLite). ``Renderer.render`` on a sample of the same posts
is reported too, for context. Times are CPU time (``process_time``): the process is
single-threaded, and what other tenants of the machine take is not ours.

One 10,000-incident repetition is ~10 s of CPU per run (20,000 posts each): long enough to
average itself, too long to repeat within a minute, so the default is one repetition
(``--reps 3`` for medians of three, ~100 s). A smaller pass (500 incidents) is instrumented
to split the time between load, plan, render, dedupe, fit and record, and profiled once
with cProfile (``--profile`` prints the top functions).

Memory is measured as a user sees it: the peak resident set (``VmHWM``) of a
``broadcaster run --dry-run`` subprocess on a state file holding the same incidents, once it
says it is running (everything planned), against the same daemon on an empty state file.

    .venv/bin/python bench/bench_planning.py            # 10,000 incidents, ~40 s
    .venv/bin/python bench/bench_planning.py --quick    # 1,000 incidents, < 10 s
    .venv/bin/python bench/bench_planning.py --channels 4 --reps 3 --profile
"""

from __future__ import annotations

import contextlib
import cProfile
import gc
import io
import math
import pstats
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import jinja2
from benchlib import (
    TEMPLATES,
    Figure,
    Result,
    finish,
    median,
    parser,
    ratio,
)

import broadcaster.editor as editor_module
import broadcaster.planner as planner_module
from broadcaster.app import default_rule
from broadcaster.config import Config, load_config
from broadcaster.editor import Editor, Recorded
from broadcaster.model import Incident, IncidentKind, Localized, PostKind, PostState, Snapshot
from broadcaster.render import Renderer
from broadcaster.store import Store
from broadcaster.textfit import LengthRule

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
# CPU time of this (single-threaded) process: on a shared machine, time other processes
# take from us is not ours. Pipeline and baselines are timed with the same clock.
CLOCK = time.process_time

# The four channels of config.example.toml; two of them (one per platform and language,
# like the README's example) unless --channels 4.
CHANNELS = {
    "x-en": ("x", "en"),
    "mastodon-fr": ("mastodon", "fr"),
    "x-fr": ("x", "fr"),
    "mastodon-en": ("mastodon", "en"),
}

SERVICES = ("Web hosting", "VPS", "Dedicated servers", "Public Cloud", "Object Storage", "DNS")
REGIONS = ("SBG", "GRA", "RBX", "BHS", "WAW", "SGP")
# (English, French) pairs; the French ones exercise its typography (" ; ", " !").
MESSAGES = (
    (
        "Servers are unreachable; teams are on site",
        "Les serveurs sont injoignables ; les équipes sont sur place",
    ),
    (
        "Power is back on one feed. Racks restart room by room",
        "Le courant est revenu sur une arrivée. Les baies redémarrent salle par salle",
    ),
    ("Latency is high on some routes", "La latence est élevée sur certaines routes"),
    ("We are rolling back the last deployment", "Nous annulons le dernier déploiement"),
)
LONG_EN = (
    "The primary storage cluster lost quorum after a switch failure in room 3. Writes are "
    "refused to protect data; reads work from replicas. We are replacing the switch and "
    "will bring the cluster back node by node, checking each one before it rejoins. "
    "Customers with replicated volumes can fail over to GRA now; others should wait for "
    "our next update rather than restart their servers, which would only slow recovery."
)
LONG_FR = (
    "La grappe de stockage principale a perdu son quorum après la panne d'un commutateur "
    "en salle 3. Les écritures sont refusées pour protéger les données ; les lectures "
    "passent par les répliques. Nous remplaçons le commutateur et relancerons la grappe "
    "nœud par nœud, en vérifiant chacun avant qu'il ne la rejoigne. Les clients aux "
    "volumes répliqués peuvent basculer sur GRA dès maintenant ; les autres devraient "
    "attendre notre prochain message plutôt que redémarrer leurs serveurs !"
)


def make_incidents(n: int, seed: int = 7, now: datetime = NOW) -> list[Incident]:
    """``n`` open incidents and maintenances, varied the way a bad day would vary them,
    as of ``now``."""
    rng = random.Random(seed)
    incidents: list[Incident] = []
    for i in range(n):
        two_languages = rng.random() < 0.7  # else one text for every language ("*")
        en_msg, fr_msg = MESSAGES[i % len(MESSAGES)]
        if rng.random() < 0.1:  # long enough to become a thread on X, sometimes on Mastodon
            en_msg, fr_msg = LONG_EN, LONG_FR

        def text(en: str, fr: str, two: bool = two_languages) -> Localized:
            return Localized({"en": en, "fr": fr} if two else {"*": en})

        common: dict[str, Any] = {
            "id": f"inc-{i:05d}",
            "severity": rng.choice(("minor", "major", "critical")),
            "services": tuple(rng.sample(SERVICES, rng.randint(0, 3))),
            "regions": tuple(rng.sample(REGIONS, rng.randint(0, 2))),
            "message": text(f"{en_msg} (ref {i})", f"{fr_msg} (réf. {i})"),
            "url": f"https://status.example.com/incidents/{i}" if rng.random() < 0.5 else None,
        }
        if rng.random() < 0.1:
            starts = now + timedelta(hours=rng.randint(2, 72))
            incidents.append(
                Incident(
                    kind=IncidentKind.MAINTENANCE,
                    title=text(f"Network upgrade {i}", f"Mise à niveau du réseau {i}"),
                    status="scheduled",
                    started_at=starts,
                    starts_at=starts,
                    ends_at=starts + timedelta(hours=rng.choice((1, 2, 3))),
                    **common,
                )
            )
            continue
        status = rng.choice(("investigating", "identified", "monitoring"))
        incidents.append(
            Incident(
                title=text(f"Outage {i} in {rng.choice(REGIONS)}", f"Panne {i} à {REGIONS[0]}"),
                status=status,
                started_at=now - timedelta(minutes=rng.randint(1, 300)),
                cause=text("a failed power feed", "une arrivée électrique en panne")
                if status != "investigating" and rng.random() < 0.6
                else None,
                workaround=text("Fail over to GRA.", "Basculez sur GRA.")
                if rng.random() < 0.2
                else None,
                next_update_at=now + timedelta(minutes=rng.randint(5, 40))
                if rng.random() < 0.1
                else None,
                **common,
            )
        )
    return incidents


def make_config(workdir: Path, channels: int) -> Config:
    """A real config file, loaded as the daemon loads it: dry-run channels need no secrets."""
    lines = [
        "[broadcaster]",
        'state_file = "state.toml"',
        f'templates_dir = "{TEMPLATES}"',
        'timezone = "Europe/Paris"',
    ]
    for name, (platform, language) in list(CHANNELS.items())[:channels]:
        lines += ["", f"[channels.{name}]", f'platform = "{platform}"', f'language = "{language}"']
        if platform == "mastodon":
            lines.append('api_base_url = "https://mastodon.example"')
    path = workdir / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return load_config(path)


def make_editor(config: Config, store: Store, renderer: Renderer) -> Editor:
    rules = {name: default_rule(c) for name, c in config.channels.items()}
    return Editor(store, renderer, config, rules)


def mark_all_sent(store: Store, at: datetime) -> None:
    """As if delivery had caught up, through the outbox's own contract (``mark_sending``
    then ``mark_sent``, as a worker does), in one batch; not part of anything timed."""
    with store.batch():
        for post in store.posts(states=(PostState.PENDING,)):
            if store.mark_sending(post.key):
                store.mark_sent(post.key, f"bench-{post.key}", None, at)


def latest_promise(store: Store) -> datetime:
    """When every open thread is owed a reminder."""
    promised = [t.promised_at for t in store.threads().values() if t.promised_at is not None]
    return max(promised)


# -- the bare baselines ----------------------------------------------------------------------


@dataclass
class RenderJob:
    """One render the pipeline did, captured so the baseline can repeat exactly it."""

    snapshot: Snapshot
    recorded: Recorded
    channel: Any
    template: jinja2.Template
    context: dict[str, Any]


@contextlib.contextmanager
def jinja_calls() -> Iterator[list[tuple[jinja2.Template, dict[str, Any]]]]:
    """Each ``jinja2.Template.new_context(vars)`` made meanwhile: the compiled template and
    the context, exactly as the renderer handed them to Jinja2 (``Template.render`` and the
    renderer's head-marking render both start there; so does a template's ``import``, which
    ``capture_jobs`` skips by keeping the first call of each render). ``Renderer`` offers no
    public way to its compiled templates, so the baseline watches Jinja2's public method
    rather than reach into the renderer (capturing is not timed)."""
    calls: list[tuple[jinja2.Template, dict[str, Any]]] = []
    new_context = jinja2.Template.new_context

    def watched(template: jinja2.Template, vars: Any = None, *args: Any, **kwargs: Any) -> Any:
        calls.append((template, dict(vars or {})))
        return new_context(template, vars, *args, **kwargs)

    with mock.patch.object(jinja2.Template, "new_context", watched):
        yield calls


def capture_jobs(
    editor: Editor, snapshots: dict[str, Snapshot], recorded: list[Recorded]
) -> list[RenderJob]:
    """Render each recorded post once more through ``Renderer.render`` and keep what it
    gave Jinja2, so the baseline repeats exactly those renders."""
    renderer = editor.renderer
    jobs = []
    with jinja_calls() as calls:
        for item in recorded:
            post = item.post
            channel = editor.channel_info(post.channel)
            snapshot = snapshots[post.incident_id]
            seen = len(calls)
            renderer.render(snapshot, post, channel, post.planned_at)
            assert len(calls) > seen, "one Jinja2 render per post"
            template, context = calls[seen]
            jobs.append(RenderJob(snapshot, item, channel, template, context))
    return jobs


def time_bare_jinja(jobs: list[RenderJob], passes: int = 3) -> float:
    """Jinja2 alone: the compiled template, the ready context, nothing else (median)."""
    times = []
    for _ in range(passes):
        gc.collect()
        t0 = CLOCK()
        for job in jobs:
            job.template.render(job.context)
        times.append(CLOCK() - t0)
    return median(times)


# Renderer.render is only context for the ratio: a sample keeps the default run short.
RENDERER_SAMPLE = 4_000


def time_renderer(renderer: Renderer, jobs: list[RenderJob]) -> float:
    """``Renderer.render`` (lookup, context, Jinja2, typography, tidying), scaled to all
    ``jobs`` from an evenly spread sample of them."""
    step = max(1, len(jobs) // RENDERER_SAMPLE)
    sample = jobs[::step]
    gc.collect()
    t0 = CLOCK()
    for job in sample:
        post = job.recorded.post
        renderer.render(job.snapshot, post, job.channel, post.planned_at)
    return (CLOCK() - t0) * len(jobs) / len(sample)


# -- one repetition ------------------------------------------------------------------------


@dataclass
class Rep:
    ingest: float
    opened: float
    reminders: float
    idle: float  # nothing due, everything delivered
    idle_backlog: float  # nothing due, every reminder still pending
    opened_posts: int
    reminder_posts: int
    opened_parts: int
    reminder_parts: int
    bare_opened: float
    bare_reminders: float
    renderer_opened: float
    renderer_reminders: float


def one_rep(
    config: Config, renderer: Renderer, incidents: list[Incident], *, with_renderer: bool
) -> Rep:
    store = Store(":memory:")
    try:
        editor = make_editor(config, store, renderer)
        t0 = CLOCK()
        editor.ingest(incidents, NOW)
        ingest = CLOCK() - t0
        snapshots = {s.incident.id: s for s in store.snapshots()}

        gc.collect()
        t0 = CLOCK()
        opened, _ = editor.run(NOW)
        t_opened = CLOCK() - t0
        assert opened and all(r.post.kind in (PostKind.OPENED, PostKind.SCHEDULED) for r in opened)
        jobs_opened = capture_jobs(editor, snapshots, opened)
        bare_opened = time_bare_jinja(jobs_opened)
        # Renderer.render is context only: measured once, to keep the default run short.
        renderer_opened = time_renderer(renderer, jobs_opened) if with_renderer else math.nan

        mark_all_sent(store, NOW)
        later = latest_promise(store)
        gc.collect()
        t0 = CLOCK()
        reminders, _ = editor.run(later)
        t_reminders = CLOCK() - t0
        assert len(reminders) == len(opened), "every thread should owe a reminder"
        assert all(r.post.kind is PostKind.REMINDER for r in reminders)
        # What every later plan costs when nothing is due (each save, each 30 s replan):
        # loading every incident and thread to find that out. First with the reminders
        # still undelivered (a paused channel's backlog), then once they are all sent.
        t0 = CLOCK()
        idle, _ = editor.run(later)
        t_idle_backlog = CLOCK() - t0
        assert not idle, "nothing should be due right after the reminders"
        mark_all_sent(store, later)
        t0 = CLOCK()
        idle, _ = editor.run(later)
        t_idle = CLOCK() - t0
        assert not idle
        jobs_reminders = capture_jobs(editor, snapshots, reminders)
        bare_reminders = time_bare_jinja(jobs_reminders)
        renderer_reminders = time_renderer(renderer, jobs_reminders) if with_renderer else math.nan
        return Rep(
            ingest=ingest,
            opened=t_opened,
            reminders=t_reminders,
            idle=t_idle,
            idle_backlog=t_idle_backlog,
            opened_posts=len(opened),
            reminder_posts=len(reminders),
            opened_parts=sum(len(r.parts) for r in opened),
            reminder_parts=sum(len(r.parts) for r in reminders),
            bare_opened=bare_opened,
            bare_reminders=bare_reminders,
            renderer_opened=renderer_opened,
            renderer_reminders=renderer_reminders,
        )
    finally:
        store.close()


# -- where the time goes -------------------------------------------------------------------


class Split:
    """Wall time per stage, by wrapping the stages the editor calls (bench-only patching)."""

    STAGES = ("load", "plan", "render", "dedupe", "fit", "record")

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(self.STAGES, 0.0)
        self._depth = 0

    def wrap(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        clock = time.perf_counter

        def timed(*args: Any, **kwargs: Any) -> Any:
            # Only the outermost stage counts: split() calls count() itself.
            if self._depth:
                return fn(*args, **kwargs)
            self._depth += 1
            t0 = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[stage] += clock() - t0
                self._depth -= 1

        return timed

    @contextlib.contextmanager
    def installed(self, editor: Editor) -> Iterator[None]:
        store, renderer = editor.store, editor.renderer
        # Methods are patched on the instances; module attributes are what editor.py looks
        # up at call time (``planner.plan``, ``split``); ``count`` is called on the rules.
        targets: list[tuple[object, str, str]] = [
            (store, "snapshots", "load"),
            (store, "threads", "load"),
            (store, "is_duplicate_text", "dedupe"),
            (store, "record_post", "record"),
            (renderer, "render_post", "render"),
            (planner_module, "plan", "plan"),
            (editor_module, "split", "fit"),
            (LengthRule, "count", "fit"),
        ]
        with contextlib.ExitStack() as stack:
            for target, name, stage in targets:
                wrapped = self.wrap(stage, getattr(target, name))
                stack.enter_context(mock.patch.object(target, name, wrapped))
            yield


def split_and_profile(
    config: Config, renderer: Renderer, incidents: list[Incident], top: int
) -> tuple[dict[str, float], str]:
    """Stage fractions of both runs (instrumented), then one cProfile'd pass of both."""
    split = Split()
    store = Store(":memory:")
    editor = make_editor(config, store, renderer)
    editor.ingest(incidents, NOW)
    t0 = time.perf_counter()
    with split.installed(editor):
        editor.run(NOW)
        mark_all_sent(store, NOW)
        editor.run(latest_promise(store))
    total = time.perf_counter() - t0
    store.close()
    fractions = {k: v / total for k, v in split.seconds.items()}
    fractions["other"] = max(0.0, 1 - sum(fractions.values()))

    store = Store(":memory:")
    editor = make_editor(config, store, renderer)
    editor.ingest(incidents, NOW)
    profile = cProfile.Profile()
    profile.enable()
    editor.run(NOW)
    mark_all_sent(store, NOW)
    editor.run(latest_promise(store))
    profile.disable()
    store.close()
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out).strip_dirs()
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return fractions, out.getvalue()


# -- memory ------------------------------------------------------------------------------------

RSS_GOAL_MB = 150.0


def _rss_mb(field: str = "VmRSS") -> float:
    """This process's resident set now (``VmRSS``) or at its peak (``VmHWM``), in MB (Linux).

    Not ``ru_maxrss``: that one survives exec, so a child forked from a big parent would
    report the parent's size."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return math.nan


def rss_child(n: int, channels: int) -> dict[str, float]:
    """In a fresh process: RSS once everything is imported, then the peak while holding
    ``n`` open incidents (as parsed from the state file) in the daemon's own file store
    with every opening planned, rendered, fitted and recorded."""
    before = _rss_mb()
    with tempfile.TemporaryDirectory() as tmp:
        config = make_config(Path(tmp), channels)
        renderer = Renderer(config.templates_dir, config.timezone)
        store = Store(Path(tmp) / "data" / "broadcaster.db")
        try:
            editor = make_editor(config, store, renderer)
            incidents = make_incidents(n)
            editor.ingest(incidents, NOW)
            recorded, _ = editor.run(NOW)
            assert len(recorded) >= n
            held = _rss_mb()
            peak = _rss_mb("VmHWM")
        finally:
            store.close()
    return {"imported_mb": before, "held_mb": held, "peak_mb": peak}


def measure_rss(n: int, channels: int) -> dict[str, float]:
    import json

    script = (
        "import json, logging, sys; logging.disable(logging.WARNING); "
        f"sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        "import bench_planning as b; "
        f"print(json.dumps(b.rss_child({n}, {channels})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def _state_json(incidents: list[Incident]) -> str:
    """A JSON state file holding ``incidents``, as ops would write it (unset fields left out)."""
    import json

    def written(incident: Incident) -> dict[str, Any]:
        data = incident.to_json()
        data.pop("origin", None)
        return {k: v for k, v in data.items() if v not in (None, [], {})}

    return json.dumps({"incidents": [written(i) for i in incidents]}, ensure_ascii=False)


def _status_kb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return math.nan


def daemon_rss(
    n: int, channels: int, timeout: float = 600.0, after: float = 5.0
) -> dict[str, float]:
    """What a user sees: ``broadcaster run --dry-run`` on a state file holding ``n`` open
    incidents (the same mix as the timed runs, dated from now). Once the daemon says it is
    running (every open incident planned and recorded: start plans everything before it
    logs "broadcaster running"), its peak resident set (``VmHWM`` of the process); then
    again ``after`` seconds later, delivery (to the dry-run journal) under way."""
    from benchlib import child_env

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_config(root, channels)
        header = (
            (root / "config.toml")
            .read_text()
            .replace(
                'state_file = "state.toml"',
                # 10,000 incidents take ~5 MB of JSON: over the default cap, as they would for ops.
                'state_file = "state.json"\ndata_dir = "data"\nstate_file_max_bytes = 33554432',
            )
        )
        (root / "config.toml").write_text(header)
        now = datetime.now(UTC).replace(microsecond=0)
        (root / "state.json").write_text(_state_json(make_incidents(n, now=now)), "utf-8")
        log = root / "daemon.err"
        command = [sys.executable, "-m", "broadcaster", "run", "--dry-run"]
        with log.open("wb") as err:
            daemon = subprocess.Popen(
                [*command, "--config", str(root / "config.toml")],
                cwd=root,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=child_env(),
            )
        try:
            started = time.monotonic()
            while b"broadcaster running" not in log.read_bytes():
                if daemon.poll() is not None:
                    raise RuntimeError(log.read_text()[-3000:])
                if time.monotonic() - started > timeout:
                    raise TimeoutError("the daemon did not finish planning in time")
                time.sleep(0.1)
            planned = time.monotonic() - started
            peak = _status_kb(daemon.pid, "VmHWM")
            time.sleep(after)
            journal = root / "data" / "dry-run.jsonl"
            return {
                "peak_mb": peak,
                "peak_delivering_mb": _status_kb(daemon.pid, "VmHWM"),
                "held_mb": _status_kb(daemon.pid, "VmRSS"),
                "planned_s": planned,
                "delivered": float(journal.read_bytes().count(b"\n") if journal.exists() else 0),
            }
        finally:
            daemon.terminate()  # our own child, by its handle
            try:
                daemon.wait(30)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()


# -- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> Result:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--incidents", type=int, help="open incidents (default 10,000; quick 1,000)")
    p.add_argument("--channels", type=int, choices=(2, 4), default=2)
    p.add_argument("--reps", type=int, help="repetitions (default 1; quick 2)")
    p.add_argument("--profile", action="store_true", help="print cProfile's top functions")
    args = p.parse_args(argv)
    started = time.perf_counter()
    n = args.incidents or (1_000 if args.quick else 10_000)
    # One 10,000-incident repetition is ~25 s of CPU; quick ones are cheap enough for two.
    reps = args.reps or (2 if args.quick else 1)
    profiled = max(200, n // 20)
    result = Result("planning", args.quick)

    with tempfile.TemporaryDirectory() as tmp:
        config = make_config(Path(tmp), args.channels)
        incidents = make_incidents(n)
        # One renderer for every run, as in the daemon: templates compile once, at start.
        renderer = Renderer(config.templates_dir, config.timezone)
        # warm-up: templates, regex caches
        one_rep(config, renderer, incidents[:50], with_renderer=False)
        runs = [one_rep(config, renderer, incidents, with_renderer=i == 0) for i in range(reps)]
        fractions, profile = split_and_profile(
            config, renderer, incidents[:profiled], 30 if args.profile else 12
        )

    memory = measure_rss(n, args.channels)
    # What a user sees: the daemon itself, on a state file with n open incidents, against
    # the same daemon on an empty one.
    daemon = daemon_rss(n, args.channels, after=1.0 if args.quick else 5.0)
    empty = daemon_rss(0, args.channels, after=0.0)

    first = runs[0]
    opened, reminders = median([r.opened for r in runs]), median([r.reminders for r in runs])
    bare_o, bare_r = median([r.bare_opened for r in runs]), median([r.bare_reminders for r in runs])
    rend_o, rend_r = first.renderer_opened, first.renderer_reminders
    both = median([r.opened + r.reminders for r in runs])
    bare_both = median([r.bare_opened + r.bare_reminders for r in runs])
    # Renderer.render was timed in the first repetition only: compare it with that one.
    rend_both = rend_o + rend_r
    first_both = first.opened + first.reminders
    posts = first.opened_posts + first.reminder_posts

    result.add(
        Figure(
            "opened run / bare Jinja2",
            ratio(opened, bare_o),
            None,
            first.opened_posts / opened,
            first.opened_posts / bare_o,
            "posts/s",
            f"{n} incidents x {args.channels} channels",
        )
    )
    result.add(
        Figure(
            "reminder run / bare Jinja2",
            ratio(reminders, bare_r),
            None,
            first.reminder_posts / reminders,
            first.reminder_posts / bare_r,
            "posts/s",
        )
    )
    result.add(
        Figure(
            "both runs / bare Jinja2",
            ratio(both, bare_both),
            None,
            both,
            bare_both,
            "s",
            f"{posts} posts",
        )
    )
    result.add(
        Figure(
            "both runs / Renderer.render",
            ratio(first_both, rend_both),
            None,
            first_both,
            rend_both,
            "s",
            "first repetition",
        )
    )
    result.add(
        Figure(
            "RSS: daemon with open incidents planned / with none",
            ratio(daemon["peak_mb"], empty["peak_mb"]),
            None,
            daemon["peak_mb"],
            empty["peak_mb"],
            "MB",
            f"peak (VmHWM) of `broadcaster run --dry-run`, {n} incidents, once running",
            value_goal=RSS_GOAL_MB,
        )
    )
    result.details = {
        "memory_mb": {
            "daemon": {k: round(v, 1) for k, v in daemon.items()},
            "daemon_empty": {k: round(v, 1) for k, v in empty.items()},
            "in_process": {k: round(v, 1) for k, v in memory.items()},
        },
        "incidents": n,
        "channels": args.channels,
        "reps": reps,
        "posts": {"opened": first.opened_posts, "reminders": first.reminder_posts},
        "parts": {"opened": first.opened_parts, "reminders": first.reminder_parts},
        "median_seconds": {
            "ingest": median([r.ingest for r in runs]),
            "opened_run": opened,
            "reminder_run": reminders,
            "idle_run": median([r.idle for r in runs]),
            "idle_run_with_backlog": median([r.idle_backlog for r in runs]),
            "bare_jinja_opened": bare_o,
            "bare_jinja_reminders": bare_r,
            "renderer_opened": rend_o,
            "renderer_reminders": rend_r,
        },
        "per_post_us": {
            "pipeline": both / posts * 1e6,
            "renderer": rend_both / posts * 1e6,  # first repetition
            "bare_jinja": bare_both / posts * 1e6,
        },
        "all_reps_seconds": [[round(r.opened, 3), round(r.reminders, 3)] for r in runs],
        "split": {k: round(v, 3) for k, v in fractions.items()},
    }

    print(
        f"{n} incidents x {args.channels} channels: {first.opened_posts} openings "
        f"({first.opened_parts} parts), {first.reminder_posts} reminders; {reps} reps, medians"
    )
    print(
        f"  ingest {result.details['median_seconds']['ingest']:.2f} s · opened run "
        f"{opened:.2f} s · reminder run {reminders:.2f} s · idle run "
        f"{result.details['median_seconds']['idle_run']:.2f} s "
        f"({result.details['median_seconds']['idle_run_with_backlog']:.2f} s with "
        f"{first.reminder_posts} posts pending) · per post: pipeline "
        f"{both / posts * 1e6:.0f} µs, Renderer.render {rend_both / posts * 1e6:.0f} µs, "
        f"bare Jinja2 {bare_both / posts * 1e6:.0f} µs"
    )
    print(
        f"  split (instrumented pass on {profiled} incidents): "
        + ", ".join(f"{k} {v:.0%}" for k, v in fractions.items())
    )
    print(
        f"  memory: daemon peak {daemon['peak_mb']:.0f} MB once running "
        f"({daemon['planned_s']:.0f} s after start; {empty['peak_mb']:.0f} MB with nothing "
        f"open); in process (editor and store only) peak {memory['peak_mb']:.0f} MB"
    )
    if args.profile:
        print(profile)
    finish(result, started, args.json)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
