"""Showing what would be posted without posting: preview, draft and simulate.

Each works on a private in-memory store (a copy of the real one where it matters), drives
the very same Editor the daemon uses, and "delivers" by marking posts sent. What they show is
therefore exactly what the daemon would post, to the character.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .app import default_rule, open_store, store_exists
from .config import Config
from .editor import Editor, Recorded
from .model import Incident
from .render import Renderer
from .store import DataStore, Store


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


def _editor(config: Config, store: DataStore) -> Editor:
    seen = {n: s.max_characters for n, s in store.channel_states().items()}
    rules = {name: default_rule(c, seen.get(name)) for name, c in config.channels.items()}
    return Editor(store, Renderer(config.templates_dir, config.timezone), config, rules)


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


def _working_copy(config: Config) -> DataStore:
    if store_exists(config, dry_run=False):
        real = open_store(config, dry_run=False)
        try:
            return real.copy_to_memory()
        finally:
            real.close()
    return Store(":memory:")


def preview(
    config: Config, incidents: list[Incident], now: datetime, incident_id: str | None = None
) -> list[Shown]:
    """What would be posted now; for threads with nothing due now, the next post and its time."""
    store = _working_copy(config)
    editor = _editor(config, store)
    editor.ingest(incidents, now)
    recorded, wake_at = editor.run(now)
    shown = _shown(config, now, recorded)
    _deliver_all(store, recorded, now)
    # Threads with nothing due now: show their next post, each at its own due time.
    covered = {(r.post.incident_id, r.post.channel) for r in recorded}
    at = wake_at
    for _ in range(64):  # bounded: one step per distinct due time
        open_threads = {key for key, t in store.threads().items() if not t.closed}
        if at is None or open_threads <= covered:
            break
        later, at_next = editor.run(at)
        fresh = [r for r in later if (r.post.incident_id, r.post.channel) not in covered]
        shown += _shown(config, at, fresh)
        covered |= {(r.post.incident_id, r.post.channel) for r in later}
        _deliver_all(store, later, at)
        at = at_next
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
    store = _working_copy(config)
    editor = _editor(config, store)
    editor.ingest(incidents, now)
    baseline, _ = editor.run(now)
    _deliver_all(store, baseline, now)
    changed = by_id[incident_id].with_changes(changes)
    editor.ingest([changed], now)
    recorded, _ = editor.run(now)
    store.close()
    return _shown(config, now, [r for r in recorded if r.post.incident_id == incident_id])


def simulate(
    config: Config,
    steps: list[tuple[datetime, list[Incident]]],
    start: datetime,
    end: datetime,
) -> list[Shown]:
    """Replay successive states on a virtual clock and return every post, with its time."""
    store = Store(":memory:")
    editor = _editor(config, store)
    steps = sorted(steps, key=lambda s: s[0])
    shown: list[Shown] = []
    now = start
    i = 0
    while now <= end:
        while i < len(steps) and steps[i][0] <= now:
            editor.ingest(steps[i][1], steps[i][0])
            i += 1
        recorded, wake_at = editor.run(now)
        shown += _shown(config, now, recorded)
        _deliver_all(store, recorded, now)
        candidates = [t for t in (wake_at, steps[i][0] if i < len(steps) else None) if t]
        if not candidates:
            break
        now = max(min(candidates), now + timedelta(microseconds=1))
    store.close()
    return shown
