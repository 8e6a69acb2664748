"""From incident state to recorded posts: plan, render, fit, record.

The one place where the pure planner, the templates and the length rules meet the store.
Nothing here talks to a platform; delivery picks the recorded posts up.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from . import planner
from .config import Config
from .model import ChannelInfo, Incident, PlannedPost, PostKind, Snapshot, ThreadState
from .render import Renderer, TemplateError
from .store import Store
from .textfit import LengthRule, split

log = logging.getLogger("broadcaster.editor")

_NUMBERING = re.compile(r" \(\d+/\d+\)$")


def _with_marker(part: str, marker: str) -> str:
    """Insert `` · marker`` before a thread part's "(i/n)", or at the end."""
    numbering = _NUMBERING.search(part)
    if numbering:
        return f"{part[: numbering.start()]} · {marker}{numbering.group(0)}"
    return f"{part} · {marker}"


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
        self._superseded: set[str] = set()

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
        rule = self.rules[post.channel]
        parts = split(text, rule)
        if any(self._repeats(post.channel, part, parts) for part in parts):
            parts = self._stamped(text, rule, post)
        return [(part, rule.count(part), rule.limit) for part in parts]

    def _repeats(self, channel: str, part: str, parts: list[str]) -> bool:
        return parts.count(part) > 1 or self.store.is_duplicate_text(channel, part)

    def _stamped(self, text: str, rule: LengthRule, post: PlannedPost) -> list[str]:
        """Parts made unique by a time stamp on each repeated part.

        X refuses duplicate content, and a repeated part would read as a stuck feed. Two
        incidents with the same long message share middle parts, so every repeated part is
        stamped, not just the last. Room for the stamp is kept in every part.
        """
        local = post.planned_at.astimezone(self.config.timezone)
        # The last marker carries a short hash of the incident id: unique even for many
        # incidents sharing one long message in the same second, and short whatever the id.
        markers = (
            f"{local:%H:%M}",
            f"{local:%H:%M:%S}",
            f"{local:%H:%M:%S} {hashlib.sha256(post.incident_id.encode()).hexdigest()[:6]}",
        )
        room = max(rule.count(f" · {m}") for m in markers) + 1
        parts = split(text, replace(rule, limit=rule.limit - room))
        result: list[str] = []
        for index, part in enumerate(parts):
            others = parts[:index] + parts[index + 1 :] + result
            stamped = part
            for marker in markers:
                if stamped not in others and not self.store.is_duplicate_text(
                    post.channel, stamped
                ):
                    break
                stamped = _with_marker(part, marker)  # each marker on the original part
            result.append(stamped)
        return result

    def _report(self, post: PlannedPost, error: TemplateError) -> None:
        # Retried at the next plan; logged once: loud, not spammy.
        if str(error) not in self._reported:
            self._reported.add(str(error))
            log.error(
                "cannot render %s for %s on %s: %s",
                post.kind,
                post.incident_id,
                post.channel,
                error,
            )

    def _record(
        self,
        snapshot: Snapshot,
        post: PlannedPost,
        thread: ThreadState,
        replaces: list[str] | None = None,
    ) -> Recorded | None:
        try:
            parts = self.compose(snapshot, post)
            language = self.config.channels[post.channel].language
            superseded = self.store.record_post(
                post, parts, language, thread, replaces=replaces or ()
            )
        except TemplateError as e:
            self._report(post, e)
            return None
        except Exception:
            if not self.store.in_transaction():
                raise  # the whole plan was rolled back (disk full...): retried as a whole
            # One bad incident must not stop every other one: its own write is undone
            # (a savepoint), the rest of the plan goes on, and it is retried next plan.
            log.exception(
                "cannot record %s for %s on %s", post.kind.value, post.incident_id, post.channel
            )
            return None
        self._superseded.update(superseded)
        item = Recorded(post, [post.key(i) for i in range(1, len(parts) + 1)], parts)
        if self.on_recorded:
            self.on_recorded(item)
        return item

    def _refresh_stale(self, snapshots: dict[str, Snapshot], now: datetime) -> list[Recorded]:
        """Re-plan unsent posts whose promised time passed while they waited.

        Same kind, newest state, fresh promise: an opening stays an opening, an update
        keeps its news, and no post goes out promising a time already gone.
        """
        recorded: list[Recorded] = []
        threads = self.store.threads()
        self._superseded = set()
        for group in self.store.stale_posts(now):
            first = group[0]
            if any(p.key in self._superseded for p in group):
                continue  # already replaced by a re-plan of this same run
            snapshot = snapshots.get(first.incident_id)
            thread = threads.get((first.incident_id, first.channel))
            if snapshot is None or thread is None or first.channel not in self.config.channels:
                continue
            if first.kind is PostKind.REMINDER and snapshot.revision > thread.last_revision:
                continue  # the planner's update about the change replaces it just below
            if snapshot.incident.is_final and not first.kind.is_final:
                continue  # the closing post is planned below and supersedes it
            sequence = thread.post_count + 1
            post = PlannedPost(
                incident_id=first.incident_id,
                channel=first.channel,
                kind=first.kind,
                revision=snapshot.revision,
                sequence=sequence,
                planned_at=now,
                next_update_at=planner.promise(snapshot, self.config.cadence, now),
            )
            new_thread = replace(
                thread,
                last_revision=snapshot.revision,
                last_status=snapshot.incident.status,
                last_planned_at=now,
                promised_at=post.next_update_at,
                post_count=sequence,
                last_post_key=post.key(),
            )
            item = self._record(snapshot, post, new_thread, [p.key for p in group])
            if item is not None:
                threads[(first.incident_id, first.channel)] = new_thread
                log.info(
                    "re-planned %s for %s on %s: its promise passed while it waited",
                    post.kind.value,
                    post.incident_id,
                    post.channel,
                )
                recorded.append(item)
        return recorded

    def run(self, now: datetime) -> tuple[list[Recorded], datetime | None]:
        """Plan at ``now`` and record every post due. Returns them and the next wake time."""
        with self._lock, self.store.batch():
            snapshots = {s.incident.id: s for s in self.store.snapshots(active_only=True)}
            recorded = self._refresh_stale(snapshots, now)
            result = planner.plan(
                list(snapshots.values()),
                self.store.threads(),
                self.config.channels,
                self.config.cadence,
                now,
            )
            for decision in result.decisions:
                item = self._record(
                    snapshots[decision.post.incident_id], decision.post, decision.thread
                )
                if item is not None:
                    recorded.append(item)
            return recorded, result.wake_at
