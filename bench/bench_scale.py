"""Work that grows with what changed, not with everything open.

Three figures, each against a baseline measured in the same run:

1. **event → post with many open incidents**: two dry-run ``Daemon`` s run side by side in
   this process (the dry-run twins of ``x-en`` and ``mastodon-fr``), one whose store holds
   ``--open`` other open incidents (already announced on both channels, their next update
   an hour away), one holding none. Each gets the same events, alternately: a new message
   for one incident of its own, applied by ``Daemon.submit`` (what the HTTP intake calls),
   from the call to each of the two posts in ``dry-run.jsonl`` (stamped as the journal
   writes the post to the daemon's ``out`` stream). Ratio: median with ``--open`` over
   median with none (goal ≤ 1.5).
2. **start → first ``/healthz`` 200**: ``Daemon.start()`` in a thread, ``GET /healthz``
   every 5 ms from the moment it is called, on a store holding ``--open`` open incidents
   and on one holding none (interleaved, ``--reps``, median). The time until start returns
   (everything planned) is in the details.
3. **idle plan**: ``Editor.run`` with nothing changed and nothing due (``changed=()``, what
   the safety net and pushed events run), against planning every open incident
   (``changed=None``, what start and reload run), on an in-memory store holding
   ``--idle-open`` open incidents; ``process_time``, interleaved, median of ``--reps``.
   Timed plan after plan, as the safety net runs (the first after a full plan, which reads
   every thread's timing once, is in the details). Goal: ≤ 0.1 (next to nothing).

The open incidents are written straight into the store (an opening per channel, sent), not
planned: the setup would otherwise take longer than what is measured.

    .venv/bin/python bench/bench_scale.py              # 5,000 open, 10,000 idle, ~40 s
    .venv/bin/python bench/bench_scale.py --quick      # 500 open, 1,000 idle, < 10 s
"""

from __future__ import annotations

import http.client
import logging
import os
import socket
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench_intake import CHANNELS, TOKEN, Stamps
from benchlib import LOOPBACK, Figure, Result, config_header, finish, median, parser, ratio

from broadcaster.app import DRY_RUN_STORE_FILE, default_rule, service
from broadcaster.config import load_config
from broadcaster.editor import Editor
from broadcaster.model import Incident, Localized, PlannedPost, PostKind, ThreadState
from broadcaster.render import Renderer
from broadcaster.store import DataStore, Store

LANGUAGES = {"x-en": "en", "mastodon-fr": "fr"}


def incident(key: str, started: datetime) -> Incident:
    return Incident(
        id=key,
        title=Localized.of({"en": f"Storage outage {key}", "fr": f"Panne de stockage {key}"}),
        status="investigating",
        severity="major",
        started_at=started,
        services=("Object Storage",),
        regions=("SBG",),
        message=Localized.of({"en": "Disks are being replaced", "fr": "Disques remplacés"}),
    )


def populate(store: DataStore, n: int, now: datetime) -> None:
    """``n`` open incidents, each announced on both channels (sent), next update in 1 h."""
    planned, promised = now - timedelta(minutes=1), now + timedelta(hours=1)
    with store.batch():
        store.apply_incidents(
            [incident(f"open-{i:05d}", now - timedelta(minutes=10)) for i in range(n)], planned
        )
        for i in range(n):
            for channel, language in LANGUAGES.items():
                post = PlannedPost(
                    f"open-{i:05d}", channel, PostKind.OPENED, 1, 1, planned, promised
                )
                thread = ThreadState(
                    post.incident_id,
                    channel,
                    1,
                    PostKind.OPENED,
                    "investigating",
                    planned,
                    promised,
                    1,
                    False,
                    post.key(1),
                )
                text = f"Storage outage {post.incident_id} on {channel}"
                store.record_post(post, [(text, len(text), 500)], language, thread, reply_to=None)
                store.mark_sending(post.key(1))
                store.mark_sent(post.key(1), f"id-{post.key(1)}", None, planned)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


class Rig:
    """A dry-run daemon over a store holding ``n`` open incidents (not started yet)."""

    def __init__(self, root: Path, name: str, n: int) -> None:
        self.n = n
        self.workdir = root / name
        (self.workdir / "data").mkdir(parents=True)
        self.port = free_port()
        intake = f'\n[intake.http]\nlisten = "{LOOPBACK}:{self.port}"\ntoken = "{TOKEN}"\n'
        self.config = self.workdir / "config.toml"
        self.config.write_text(config_header() + CHANNELS + intake)
        (self.workdir / "state.toml").write_text("")
        store = Store(self.workdir / "data" / DRY_RUN_STORE_FILE)
        populate(store, n, datetime.now(UTC))
        store.close()
        self.out = Stamps()
        self.daemon = service(self.config, dry_run=True, out=self.out).daemon
        self.probe = f"probe-{name}"

    def start_until_healthy(self) -> tuple[float, float]:
        """Seconds from ``start()`` to the first /healthz 200, and until start returns."""
        done: list[float] = []
        failed: list[BaseException] = []

        def run() -> None:
            try:
                self.daemon.start()
            except BaseException as e:  # reported below
                failed.append(e)
            done.append(time.perf_counter())

        t0 = time.perf_counter()
        threading.Thread(target=run, daemon=True).start()
        while True:
            if failed:
                raise failed[0]
            if healthz(self.port) == 200:
                healthy = time.perf_counter()
                break
            time.sleep(0.005)
        while not done:
            time.sleep(0.005)
        return healthy - t0, done[0] - t0

    def open_probe(self) -> None:
        posted = len(self.out.posts)
        event = incident(self.probe, datetime.now(UTC)).to_json()
        self.daemon.submit(
            {k: v for k, v in event.items() if v is not None and k != "origin"},
            origin="bench",
            source="bench",
        )
        self.out.wait_for(posted + 2, 30, "the probe's opening posts")

    def event_to_posts(self, k: int) -> list[float]:
        """One new message for the probe: seconds from submit to each of its two posts."""
        marker = f"ref-{k:04d}"
        posted = len(self.out.posts)
        event = {"id": self.probe, "message": {"en": f"Still on it, {marker}", "fr": marker}}
        before = time.perf_counter()
        self.daemon.submit(event, origin="bench", source="bench")
        found = self.out.wait_for(posted + 2, 30, f"the posts of event {k}")[posted:]
        assert len(found) == 2 and all(marker in text for _, text in found), found
        return [at - before for at, _ in found]

    def close(self) -> None:
        self.daemon.stop()
        self.daemon.shutdown()


def healthz(port: int) -> int | None:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=5)
    try:
        conn.request("GET", "/healthz")
        r = conn.getresponse()
        r.read()
        return r.status
    except OSError:
        return None
    finally:
        conn.close()


def idle_plans(n: int, reps: int) -> dict[str, float]:
    """CPU seconds of an idle plan (nothing changed, nothing due) and of a full plan."""
    config = load_config(Path(__file__).resolve().parent.parent / "config.example.toml")
    config = config.__class__(
        **{**config.__dict__, "channels": {c: config.channels[c] for c in LANGUAGES}}
    )
    store = Store(":memory:")
    now = datetime.now(UTC)
    populate(store, n, now)
    rules = {name: default_rule(c) for name, c in config.channels.items()}
    editor = Editor(store, Renderer(config.templates_dir, config.timezone), config, rules)
    idle: list[float] = []
    full: list[float] = []
    cold: list[float] = []

    def timed(changed: tuple[str, ...] | None, times: list[float], runs: int = 1) -> None:
        c0 = time.process_time()
        for _ in range(runs):
            try:
                recorded, _ = editor.run(now, changed)
            except TypeError:  # before incremental planning: every plan plans everything
                recorded, _ = editor.run(now)
            assert recorded == [], "nothing is due"
        times.append((time.process_time() - c0) / runs)

    for _ in range(reps):
        timed(None, full)
        timed((), cold)  # the first after a full plan reads every thread's timing
        timed((), idle, runs=20)  # the safety net, plan after plan
    return {"idle_s": median(idle), "full_s": median(full), "first_idle_s": median(cold)}


def main(argv: list[str] | None = None) -> Result:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--open", type=int, help="other open incidents (default 5000; quick 500)")
    p.add_argument("--idle-open", type=int, help="for the idle plan (default 10000; quick 1000)")
    p.add_argument("--events", type=int, help="events per daemon (default 30; quick 6)")
    p.add_argument("--reps", type=int, help="repetitions (default 3; quick 1)")
    args = p.parse_args(argv)
    started = time.perf_counter()
    n_open = args.open or (500 if args.quick else 5000)
    n_idle = args.idle_open or (1000 if args.quick else 10000)
    events = args.events or (6 if args.quick else 30)
    reps = args.reps or (1 if args.quick else 3)
    result = Result("scale", args.quick)
    os.environ.pop("NOTIFY_SOCKET", None)
    logging.getLogger("apscheduler").propagate = False

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        healthy: dict[int, list[float]] = {0: [], n_open: []}
        planned: dict[int, list[float]] = {0: [], n_open: []}
        latency: dict[int, list[float]] = {0: [], n_open: []}
        for rep in range(reps):
            rigs = [Rig(root, f"r{rep}-none", 0), Rig(root, f"r{rep}-many", n_open)]
            try:
                for rig in rigs if rep % 2 == 0 else rigs[::-1]:
                    first, done = rig.start_until_healthy()
                    healthy[rig.n].append(first)
                    planned[rig.n].append(done)
                if rep == 0:  # latency on the first pair, events alternating between them
                    for rig in rigs:
                        rig.open_probe()
                    for k in range(events):
                        for rig in rigs if k % 2 == 0 else rigs[::-1]:
                            latency[rig.n] += rig.event_to_posts(k)
            finally:
                for rig in rigs:
                    rig.close()

    lat_many, lat_none = median(latency[n_open]), median(latency[0])
    result.add(
        Figure(
            f"event → post, {n_open:,} other open incidents (median)",
            ratio(lat_many, lat_none),
            1.5,
            lat_many,
            lat_none,
            "s",
            note="baseline: the same with none open",
        )
    )
    up_many, up_none = median(healthy[n_open]), median(healthy[0])
    result.add(
        Figure(
            f"start → first /healthz 200, {n_open:,} open incidents",
            ratio(up_many, up_none),
            None,
            up_many,
            up_none,
            "s",
            note="baseline: the same with none open",
        )
    )
    plans = idle_plans(n_idle, reps)
    result.add(
        Figure(
            f"idle plan, {n_idle:,} open incidents (CPU)",
            ratio(plans["idle_s"], plans["full_s"]),
            0.1,
            plans["idle_s"],
            plans["full_s"],
            "s",
            note="baseline: planning every open incident",
        )
    )
    result.details = {
        "open": n_open,
        "idle_open": n_idle,
        "events": events,
        "reps": reps,
        "start_until_planned_s": {str(k): median(v) for k, v in planned.items()},
        "latency_samples": {str(k): len(v) for k, v in latency.items()},
        "idle_plan": plans,
    }
    print(
        f"start returned (everything planned) after {median(planned[n_open]):.2f} s with "
        f"{n_open:,} open, {median(planned[0]):.2f} s with none"
    )
    finish(result, started, args.json)
    return result


if __name__ == "__main__":
    main()
