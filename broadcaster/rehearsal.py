"""Showing what would be posted without posting: preview, draft and simulate.

Each works on a private in-memory store (a copy of the real one where it matters), drives
the very same Editor the daemon uses, and "delivers" by marking posts sent. What they show is
therefore exactly what the daemon would post, to the character.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .app import rehearsal as working_copy
from .config import Config
from .editor import Editor, Recorded
from .model import Incident
from .planner import Budget
from .store import DataStore


@dataclass(frozen=True)
class Shown:
    at: datetime
    recorded: Recorded
    platform: str
    language: str

    def to_json(self) -> dict[str, Any]:
        post = self.recorded.post
        return {
            "at": self.at.isoformat(),
            "channel": post.channel,
            "platform": self.platform,
            "language": self.language,
            "incident_id": post.incident_id,
            "kind": post.kind.value,
            "next_update_at": post.next_update_at.isoformat() if post.next_update_at else None,
            "text": "\n\n".join(text for text, _, _ in self.recorded.parts),
            "parts": [
                {"text": text, "length": length, "limit": limit}
                for text, length, limit in self.recorded.parts
            ],
        }


def _deliver_all(store: DataStore, recorded: list[Recorded], at: datetime) -> None:
    for item in recorded:
        for key in item.keys:
            store.mark_sent(key, f"sim-{key}", None, at)


def _shown(config: Config, at: datetime, recorded: list[Recorded]) -> list[Shown]:
    return [
        Shown(
            at,
            r,
            config.channels[r.post.channel].platform,
            config.channels[r.post.channel].language,
        )
        for r in recorded
    ]


class _Rehearsal:
    """The editor and the delivery workers on a virtual clock: plans as the daemon does,
    and "sends" each part when its channel's budget allows, as the workers do. A post is
    shown when its first part goes out; one superseded while it waited is never shown."""

    def __init__(self, config: Config, store: DataStore, editor: Editor) -> None:
        self.config = config
        self.store = store
        self.editor = editor
        self.budgets = {name: Budget.of(c) for name, c in config.channels.items()}
        self.waiting: dict[str, Recorded] = {}  # by the key of its first part

    def plan(self, now: datetime) -> datetime | None:
        recorded, wake_at = self.editor.run(now)
        self.waiting.update((r.keys[0], r) for r in recorded)
        return wake_at

    def deliver(self, now: datetime) -> tuple[list[Shown], datetime | None]:
        """Send every part whose slot has come; the posts that went out, and the next slot."""
        shown: list[Shown] = []
        next_slot: datetime | None = None
        for name, budget in self.budgets.items():
            while (part := self.store.next_to_deliver(name)) is not None:
                if budget.horizon:
                    sent = self.store.sent_times(name, now - budget.horizon)
                    slot = budget.next_slot(sent, now)
                    if slot is not None:
                        next_slot = slot if next_slot is None else min(next_slot, slot)
                        break
                self.store.mark_sending(part.key)
                self.store.mark_sent(part.key, f"sim-{part.key}", None, now)
                first = self.waiting.pop(part.key, None)
                if first is not None:
                    shown += _shown(self.config, now, [first])
        return shown, next_slot


def _earliest(*times: datetime | None) -> datetime | None:
    return min((t for t in times if t is not None), default=None)


def preview(
    config: Config, incidents: list[Incident], now: datetime, incident_id: str | None = None
) -> list[Shown]:
    """What would be posted now, and when it goes out within its channel's budget; for
    threads with nothing due now, the next post and its time."""
    store, editor = working_copy(config)
    rehearsal = _Rehearsal(config, store, editor)
    rehearsal.editor.ingest(incidents, now)
    shown: list[Shown] = []
    covered: set[tuple[str, str]] = set()
    planned: set[tuple[str, str]] = set()
    at: datetime | None = now
    for _ in range(256):  # bounded: one step per distinct due time or budget slot
        if at is None:
            break
        wake_at = rehearsal.plan(at)
        planned |= {(r.post.incident_id, r.post.channel) for r in rehearsal.waiting.values()}
        out, slot = rehearsal.deliver(at)
        for s in out:
            thread = (s.recorded.post.incident_id, s.recorded.post.channel)
            if thread not in covered:
                shown.append(s)
                covered.add(thread)
        open_threads = {key for key, t in store.threads().items() if not t.closed}
        if (open_threads | planned) <= covered:
            break
        following = _earliest(wake_at, slot)
        if following is not None:
            following = following.astimezone(config.timezone)
        at = None if following is None else max(following, at + timedelta(microseconds=1))
    store.close()
    return [s for s in shown if incident_id is None or s.recorded.post.incident_id == incident_id]


def draft(
    config: Config,
    incidents: list[Incident],
    incident_id: str,
    changes: Mapping[str, Any],
    now: datetime,
) -> list[Shown]:
    """The posts that applying ``changes`` to one incident would produce, on every channel.

    What the store already knows (or, on a fresh install, the current file) counts as
    already posted, so the draft shows the update itself rather than an opening.
    """
    by_id = {i.id: i for i in incidents}
    if incident_id not in by_id:
        raise KeyError(incident_id)
    store, editor = working_copy(config)
    # The file as it is now, taken as posted: its warnings are not the draft's (a promise
    # being changed must not be warned about), so they are not logged.
    with without_advice():
        editor.ingest(incidents, now)
        baseline, _ = editor.run(now)
    _deliver_all(store, baseline, now)
    changed = by_id[incident_id].with_changes(changes)
    editor.ingest([changed], now)
    recorded, _ = editor.run(now)
    store.close()
    return _shown(config, now, [r for r in recorded if r.post.incident_id == incident_id])


class _AdviceFilter(logging.Filter):
    """Drops the editor's warnings logged by a thread inside ``without_advice``."""

    def __init__(self) -> None:
        super().__init__()
        self.quiet = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno != logging.WARNING or not getattr(self.quiet, "depth", 0)


_ADVICE_FILTER = _AdviceFilter()


@contextmanager
def without_advice() -> Iterator[None]:
    """The editor's warnings (``advice``) left out of the log while this thread is in the
    block: for rehearsals whose warnings are shown elsewhere or are not the point."""
    logging.getLogger("broadcaster.editor").addFilter(_ADVICE_FILTER)  # once: a set
    quiet = _ADVICE_FILTER.quiet
    quiet.depth = getattr(quiet, "depth", 0) + 1
    try:
        yield
    finally:
        quiet.depth -= 1


def simulate(
    config: Config,
    steps: list[tuple[datetime, list[Incident]]],
    start: datetime,
    end: datetime,
) -> list[Shown]:
    """Replay successive states on a virtual clock and return every post, with the time it
    goes out: the channels' budgets apply, as in the daemon."""
    store, editor = working_copy(config, fresh=True)
    rehearsal = _Rehearsal(config, store, editor)
    steps = sorted(steps, key=lambda s: s[0])
    shown: list[Shown] = []
    now = start
    i = 0
    while now <= end:
        while i < len(steps) and steps[i][0] <= now:
            rehearsal.editor.ingest(steps[i][1], steps[i][0])
            i += 1
        wake_at = rehearsal.plan(now)
        out, slot = rehearsal.deliver(now)
        shown += out
        following = _earliest(wake_at, steps[i][0] if i < len(steps) else None, slot)
        if following is None:
            break
        now = max(following.astimezone(config.timezone), now + timedelta(microseconds=1))
    store.close()
    return shown
