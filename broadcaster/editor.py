"""From incident state to recorded posts: plan, render, fit, record.

The one place where the pure planner, the templates and the length rules meet the store.
Nothing here talks to a platform; delivery picks the recorded posts up.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from . import planner
from .config import Config
from .model import ChannelInfo, Incident, PlannedPost, Snapshot
from .render import Renderer, TemplateError
from .store import Store
from .textfit import LengthRule, split

log = logging.getLogger("broadcaster.editor")


@dataclass(frozen=True)
class Recorded:
    post: PlannedPost
    keys: list[str]
    parts: list[tuple[str, int, int]]


class Editor:
    def __init__(
        self,
        store: Store,
        renderer: Renderer,
        config: Config,
        rules: Mapping[str, LengthRule],
        on_recorded: Callable[[Recorded], None] | None = None,
    ) -> None:
        self.store = store
        self.renderer = renderer
        self.config = config
        self.rules = dict(rules)
        self.on_recorded = on_recorded
        self._lock = threading.Lock()
        self._reported: set[str] = set()

    def channel_info(self, name: str) -> ChannelInfo:
        c = self.config.channels[name]
        return ChannelInfo(name=name, platform=c.platform, language=c.language)

    def ingest(
        self, incidents: Iterable[Incident], now: datetime, *, source: str | None = None
    ) -> list[str]:
        return self.store.apply_incidents(incidents, now, source=source)

    def compose(self, snapshot: Snapshot, post: PlannedPost) -> list[tuple[str, int, int]]:
        """The exact parts of one post: (text, counted length, limit)."""
        channel = self.channel_info(post.channel)
        text = self.renderer.render(snapshot, post, channel, post.planned_at)
        if self.store.is_duplicate_text(post.channel, text):
            # X refuses duplicate content and readers deserve to see time move: stamp it.
            stamp = post.planned_at.astimezone(self.config.timezone)
            text = f"{text}\n({stamp:%H:%M:%S})"
        rule = self.rules[post.channel]
        return [(part, rule.count(part), rule.limit) for part in split(text, rule)]

    def run(self, now: datetime) -> tuple[list[Recorded], datetime | None]:
        """Plan at ``now`` and record every post due. Returns them and the next wake time."""
        with self._lock:
            snapshots = {s.incident.id: s for s in self.store.snapshots()}
            result = planner.plan(
                list(snapshots.values()),
                self.store.threads(),
                self.config.channels,
                self.config.cadence,
                now,
            )
            recorded: list[Recorded] = []
            for decision in result.decisions:
                post = decision.post
                try:
                    parts = self.compose(snapshots[post.incident_id], post)
                except TemplateError as e:
                    # Retried at the next plan; logged once: loud, not spammy.
                    if str(e) not in self._reported:
                        self._reported.add(str(e))
                        log.error(
                            "cannot render %s for %s on %s: %s",
                            post.kind,
                            post.incident_id,
                            post.channel,
                            e,
                        )
                    continue
                language = self.config.channels[post.channel].language
                self.store.record_post(post, parts, language, decision.thread)
                item = Recorded(post, [post.key(i) for i in range(1, len(parts) + 1)], parts)
                recorded.append(item)
                if self.on_recorded:
                    self.on_recorded(item)
            return recorded, result.wake_at
