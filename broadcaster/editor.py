"""From incident state to recorded posts: plan, render, fit, record.

The one place where the pure planner, the templates and the length rules meet the store.
The planner decides (what to post, what it supersedes, what it replies to); the editor
composes each post's exact parts (render, fit, stamp repeats) and records them. Nothing
here talks to a platform; delivery picks the recorded posts up.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from . import planner
from .config import Config
from .model import ChannelInfo, Incident, PlannedPost, Snapshot
from .render import Renderer, TemplateError
from .store import DataStore
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
        store: DataStore,
        renderer: Renderer,
        config: Config,
        rules: Mapping[str, LengthRule],
    ) -> None:
        self.store = store
        self.renderer = renderer
        self.config = config
        self.rules = dict(rules)
        self._lock = threading.Lock()
        self._reported: set[str] = set()
        # (incident, channel) → why its post cannot be recorded: shown by /healthz, the
        # metrics and the logs (once per revision), retried at every plan.
        self.unplannable: dict[tuple[str, str], str] = {}

    def channel_info(self, name: str) -> ChannelInfo:
        return self.config.channels[name].info()

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

    def _record(self, snapshot: Snapshot, decision: planner.Decision) -> Recorded | None:
        post = decision.post
        try:
            parts = self.compose(snapshot, post)
            language = self.config.channels[post.channel].language
            # The thread remembers its last part: known only now that the post is split.
            thread = replace(decision.thread, last_post_key=post.key(len(parts)))
            self.store.record_post(
                post,
                parts,
                language,
                thread,
                reply_to=decision.reply_to,
                supersedes=decision.supersedes,
            )
        except TemplateError as e:
            self._report(post, e)
            return None
        except Exception as e:
            if not self.store.in_transaction():
                raise  # the whole plan was rolled back (disk full...): retried as a whole
            # One bad incident must not stop every other one: its own write is undone
            # (a savepoint), the rest of the plan goes on, and it is retried next plan.
            # Logged once per revision of the incident, not at every plan.
            where = (post.incident_id, post.channel)
            self.unplannable[where] = f"cannot record {post.kind.value}: {type(e).__name__}: {e}"
            once = f"{post.incident_id}|{snapshot.revision}|{post.channel}|{post.kind.value}"
            if once not in self._reported:
                self._reported.add(once)
                log.exception(
                    "cannot record %s for %s on %s (revision %d; retried at every plan, "
                    "logged again at its next revision)",
                    post.kind.value,
                    post.incident_id,
                    post.channel,
                    snapshot.revision,
                )
            return None
        self.unplannable.pop((post.incident_id, post.channel), None)
        return Recorded(post, [post.key(i) for i in range(1, len(parts) + 1)], parts)

    def _refresh_stale(self, snapshots: dict[str, Snapshot], now: datetime) -> list[Recorded]:
        """Record the planner's fresh plan for each unsent post whose promise passed."""
        recorded: list[Recorded] = []
        threads = self.store.threads()
        for stale in self.store.stale_posts(now):
            first = stale[0]
            thread_key = (first.incident_id, first.channel)
            # Read again for each: re-planning one post may have superseded the next.
            tail = self.store.thread_tail(*thread_key)
            decision = planner.replan_stale(
                stale,
                snapshots.get(first.incident_id),
                threads.get(thread_key),
                tail,
                self.config.channels,
                self.config.cadence,
                now,
            )
            if decision is None:
                continue
            item = self._record(snapshots[first.incident_id], decision)
            if item is not None:
                threads[thread_key] = decision.thread
                log.info(
                    "re-planned %s for %s on %s: its promise passed while it waited",
                    item.post.kind.value,
                    item.post.incident_id,
                    item.post.channel,
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
                self.store.thread_tail,
            )
            for decision in result.decisions:
                item = self._record(snapshots[decision.post.incident_id], decision)
                if item is not None:
                    recorded.append(item)
            return recorded, result.wake_at
