"""Incremental planning records exactly what planning everything records (fake clock).

The same events and clock ticks go through two editors on two stores: one plans every
open incident at every step (``run(now)``), the other only what changed and what is due
(``run(now, changed)``, or nothing said: a change another instance made). Whatever the
sequence (incidents opened, updated, resolved and reopened, maintenances scheduled,
started and moved, promises passing while a channel is paused, parts delivered), both
record the same posts: same keys, texts, reply targets, supersessions, promises, and
the incremental one wakes no later.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import ROOT

from broadcaster.app import default_rule
from broadcaster.config import Config, load_config
from broadcaster.editor import Editor
from broadcaster.model import Incident, IncidentKind, Localized
from broadcaster.render import Renderer
from broadcaster.store import DataStore, Store

PARIS = ZoneInfo("Europe/Paris")
T0 = datetime(2017, 11, 9, 7, 25, tzinfo=PARIS)
IDS = ("sbg", "rbx", "gra", "bhs")
MAINTENANCE = "bhs"
MESSAGES = ("Power lost in both feeds.", "Generators started.", "Cooling restored in room 2.")


def config() -> Config:
    base = load_config(ROOT / "config.example.toml")
    x, mastodon = base.channels["x-en"], base.channels["mastodon-fr"]
    channels = {
        "x-en": x,
        # Only critical incidents: a thread that starts when an incident becomes critical.
        "mastodon-fr": replace(mastodon, severities=("critical",)),
        # A budget: promises pushed back to what the channel can keep.
        "x-fr": replace(base.channels["x-fr"], max_posts=(6, timedelta(hours=2))),
    }
    return replace(base, channels=channels)


CONFIG = config()
RULES = {name: default_rule(c) for name, c in CONFIG.channels.items()}
RENDERER = Renderer(CONFIG.templates_dir, CONFIG.timezone)


def editor(path: Path | str = ":memory:") -> Editor:
    store = Store(path)
    store._db.execute("PRAGMA synchronous=OFF")  # a test: no power cut to survive
    return Editor(store, RENDERER, CONFIG, RULES)


def incident(key: str, state: dict[str, Any], now: datetime) -> Incident:
    status, severity, message, asked = (
        state["status"],
        state["severity"],
        state["message"],
        state["asked"],
    )
    fields: dict[str, Any] = dict(
        id=key,
        title=Localized.of(f"Trouble in {key}"),
        severity=severity,
        services=("VPS",),
        message=Localized.of(MESSAGES[message]),
        next_update_at=now + timedelta(minutes=asked) if asked else None,
    )
    if key == MAINTENANCE:
        statuses: tuple[str, ...] = ("scheduled", "in_progress", "completed")
        starts = T0 + timedelta(minutes=state["window"])
        fields |= dict(
            kind=IncidentKind.MAINTENANCE,
            status=statuses[status % 3],
            starts_at=starts,
            ends_at=starts + timedelta(minutes=90),
            started_at=starts,
        )
    else:
        statuses = ("investigating", "identified", "monitoring", "resolved")
        fields |= dict(status=statuses[status % 4], started_at=T0)
        if fields["status"] == "resolved":
            fields["resolved_at"] = now
    return Incident(**fields)


change = st.fixed_dictionaries(
    {
        "status": st.integers(0, 3),
        "severity": st.sampled_from(("minor", "major", "critical")),
        "message": st.integers(0, len(MESSAGES) - 1),
        "asked": st.sampled_from((None, None, 3, 10, 45)),
        "window": st.sampled_from((20, 50, 200)),
    }
)
step = st.one_of(
    st.tuples(st.just("change"), st.sampled_from(IDS), change),
    st.tuples(st.just("elsewhere"), st.sampled_from(IDS), change),
    st.tuples(st.just("ask"), st.sampled_from(IDS), st.sampled_from((3, 10, 45))),
    st.tuples(st.just("tick"), st.integers(1, 90)),
    st.tuples(st.just("wake")),
    st.tuples(st.just("deliver"), st.sampled_from(sorted(CONFIG.channels)), st.integers(1, 3)),
)


def deliver(store: DataStore, channel: str, count: int, now: datetime) -> None:
    """The channel's first ``count`` parts go out (the same ones in both stores)."""
    for _ in range(count):
        post = store.next_to_deliver(channel)
        if post is None:
            return
        assert store.mark_sending(post.key)
        store.mark_sent(post.key, f"id-{post.key}", None, now)


def outbox(store: DataStore) -> list[tuple[Any, ...]]:
    return [
        (
            p.key,
            p.text,
            p.reply_to_key,
            p.state,
            p.planned_at,
            p.next_update_at,
        )
        for p in store.posts()
    ]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, min_size=4, max_size=24))
def test_planning_what_changed_and_what_is_due_records_what_planning_everything_does(
    steps: list[tuple[Any, ...]],
) -> None:
    tmp = tempfile.TemporaryDirectory()
    # A file, so that a change made by another connection (another instance) is seen.
    path = Path(tmp.name) / "incremental.sqlite3"
    full, incremental = editor(), editor(path)
    other = Store(path)
    now = T0
    wake: datetime | None = None
    opening = dict(status=0, severity="critical", message=0, asked=None, window=50)
    prelude = [("change", "sbg", opening), ("change", MAINTENANCE, opening)]
    states: dict[str, dict[str, Any]] = {}
    for action, *args in prelude + steps:
        changed: list[str] = []
        if action == "change":
            key, state = args
            states[key] = state
            made = incident(key, state, now)
            changed = full.ingest([made], now)
            assert incremental.ingest([made], now) == changed
        elif action in ("elsewhere", "ask"):
            # Another instance changed it and died before planning: no one says it
            # changed, the thread timings must show it (a severity kept: a channel that
            # starts matching an incident it has never posted about needs its ``changed``).
            # "ask": ops ask for the next update sooner, not a change worth a post.
            key, new = args
            state = states.get(key, opening)
            new = state | {"asked": new} if action == "ask" else new
            states[key] = new = new | {"severity": state["severity"]}
            made = incident(key, new, now)
            full.store.apply_incidents([made], now)
            other.apply_incidents([made], now)
        elif action == "tick":
            now += timedelta(minutes=args[0])
        elif action == "wake":
            now = max(now, wake) if wake is not None else now + timedelta(hours=1)
        else:
            channel, count = args
            deliver(full.store, channel, count, now)
            deliver(incremental.store, channel, count, now)
            continue
        # The daemon's callers: every change passed on (or left to what ``ingest`` saw).
        done, wake = full.run(now)
        again, incremental_wake = incremental.run(now, changed if changed else ())
        assert [r.keys for r in again] == [r.keys for r in done]
        # Never later (a thread just posted on may be due before its promise, when ops
        # asked for an update the budget held back: waking early costs an idle plan).
        assert wake is None or (incremental_wake is not None and incremental_wake <= wake)
        wake = incremental_wake or wake
        assert outbox(incremental.store) == outbox(full.store)
        assert incremental.store.threads() == full.store.threads()
    other.close()
    incremental.store.close()
    tmp.cleanup()


def test_an_idle_plan_reads_no_incident_whole() -> None:
    """Nothing changed, nothing due: the plan reads the timings, no incident's JSON."""
    planner = editor()
    for key in IDS[:3]:
        planner.ingest(
            [
                incident(
                    key, dict(status=0, severity="critical", message=0, asked=None, window=20), T0
                )
            ],
            T0,
        )
    _, wake = planner.run(T0)
    assert wake is not None
    read: list[object] = []
    store = planner.store
    original = store.snapshots

    def counting(**kw: Any) -> Any:
        result = original(**kw)
        read.extend(result)
        return result

    store.snapshots = counting  # type: ignore[method-assign]
    recorded, again = planner.run(wake - timedelta(seconds=1), ())
    assert recorded == [] and again == wake and read == []
    recorded, _ = planner.run(wake, ())
    assert {r.post.incident_id for r in recorded} == set(IDS[:3]) and len(read) == 3


def test_a_plan_of_many_incidents_goes_a_chunk_at_a_time_and_records_the_same_posts(
    monkeypatch: Any,
) -> None:
    """Past ``_CHUNK`` incidents (and no budget), a plan loads and plans them a chunk at a
    time, to hold less at once: the same posts, in the same order, as one pass."""
    import broadcaster.editor as editor_module

    unbudgeted = replace(CONFIG, channels={k: v for k, v in CONFIG.channels.items() if k != "x-fr"})
    rules = {name: RULES[name] for name in unbudgeted.channels}
    keys = [f"inc-{i:02d}" for i in range(13)]

    def plans(chunk: int) -> tuple[list[Any], list[Any], Any]:
        monkeypatch.setattr(editor_module, "_CHUNK", chunk)
        store = Store(":memory:")
        planner = Editor(store, RENDERER, unbudgeted, rules)
        states = [
            dict(status=i % 3, severity=("minor", "critical")[i % 2], message=i % 3, asked=None)
            for i in range(len(keys))
        ]
        made = [
            incident(key, state | {"window": 50}, T0)
            for key, state in zip(keys, states, strict=True)
        ]
        changed = planner.ingest(made, T0)
        runs = [planner.run(T0, changed)[0]]
        for channel in unbudgeted.channels:
            deliver(store, channel, 5, T0)
        later = T0 + timedelta(hours=2)
        runs.append(planner.run(later)[0])  # everything (start, reload): reminders, stale
        runs.append(planner.run(later + timedelta(hours=2), ())[0])  # what is due
        seen = [[(r.post, r.parts) for r in run] for run in runs]
        result = (seen, outbox(store), store.threads())
        store.close()
        return result

    assert plans(4) == plans(1000)


def test_more_changed_ids_than_a_chunk_but_few_still_open_are_planned_at_once(
    monkeypatch: Any,
) -> None:
    """Past ``_CHUNK`` ids of which only a few are open (a backfill touching old, closed
    incidents), the plan takes the open ones in one pass: their openings now, not at the
    next safety-net plan a quarter of an hour later."""
    import broadcaster.editor as editor_module

    monkeypatch.setattr(editor_module, "_CHUNK", 4)
    unbudgeted = replace(CONFIG, channels={k: v for k, v in CONFIG.channels.items() if k != "x-fr"})
    rules = {name: RULES[name] for name in unbudgeted.channels}
    planner = Editor(Store(":memory:"), RENDERER, unbudgeted, rules)
    opened = [
        incident(
            f"new-{i}", dict(status=0, severity="critical", message=0, asked=None, window=50), T0
        )
        for i in range(3)
    ]
    changed = planner.ingest(opened, T0)
    recorded, wake_at = planner.run(T0, [*changed, "gone-1", "gone-2"])
    assert {r.post.incident_id for r in recorded} == {"new-0", "new-1", "new-2"}
    assert wake_at is not None, "their promised updates are scheduled"
