"""The plain data the whole service talks about: incidents, planned posts, outbox records.

Nothing here does I/O. Every other module imports from here, never the other way round.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

ALL_LANGUAGES = "*"


class IncidentKind(enum.StrEnum):
    INCIDENT = "incident"
    MAINTENANCE = "maintenance"


INCIDENT_STATUSES = ("investigating", "identified", "monitoring", "resolved")
MAINTENANCE_STATUSES = ("scheduled", "in_progress", "completed")
FINAL_STATUSES = frozenset({"resolved", "completed"})
SEVERITIES = ("minor", "major", "critical")


class PostKind(enum.StrEnum):
    OPENED = "opened"
    UPDATE = "update"
    REMINDER = "reminder"
    RESOLVED = "resolved"
    SCHEDULED = "scheduled"
    STARTED = "started"
    COMPLETED = "completed"

    @property
    def is_final(self) -> bool:
        return self in (PostKind.RESOLVED, PostKind.COMPLETED)

    @property
    def is_droppable(self) -> bool:
        """Whether a newer post about the same incident may replace this one unsent.

        Openings and closings are never dropped: readers must see a thread start and end.
        """
        return self in (PostKind.UPDATE, PostKind.REMINDER)


class PostState(enum.StrEnum):
    PENDING = "pending"  # recorded, not yet handed to the platform
    SENDING = "sending"  # handed to the platform; outcome not yet recorded
    SENT = "sent"  # the platform confirmed it
    FAILED = "failed"  # the platform refused it for good (e.g. 422)
    SUPERSEDED = "superseded"  # replaced, unsent, by a post about a newer state


@dataclass(frozen=True)
class Localized:
    """A text in one or more languages. Key ``*`` applies to every language."""

    values: Mapping[str, str]

    def get(self, language: str) -> str | None:
        if language in self.values:
            return self.values[language]
        return self.values.get(ALL_LANGUAGES)

    def languages(self) -> frozenset[str]:
        return frozenset(self.values)

    def covers(self, language: str) -> bool:
        return language in self.values or ALL_LANGUAGES in self.values

    def to_json(self) -> dict[str, str]:
        return dict(self.values)

    @classmethod
    def of(cls, value: str | Mapping[str, str] | None) -> Localized | None:
        if value is None:
            return None
        if isinstance(value, str):
            return cls({ALL_LANGUAGES: value})
        return cls(dict(value))


@dataclass(frozen=True)
class Incident:
    """One incident or maintenance as ops describe it (one entry of the state file)."""

    id: str
    title: Localized
    status: str
    started_at: datetime
    kind: IncidentKind = IncidentKind.INCIDENT
    severity: str = "major"
    services: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    message: Localized | None = None
    cause: Localized | None = None
    workaround: Localized | None = None
    next_update_at: datetime | None = None
    url: str | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    resolved_at: datetime | None = None
    data_loss: bool | None = None
    postmortem_url: str | None = None
    # Where this incident was described, for error messages: "path:line".
    origin: str = field(default="", compare=False)

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    def change_fingerprint(self) -> tuple:
        """What makes a new public update worth posting (status, message, cause, workaround)."""

        def lz(v: Localized | None) -> tuple:
            return tuple(sorted(v.values.items())) if v else ()

        return (self.status, lz(self.message), lz(self.cause), lz(self.workaround))

    def languages_missing(self, language: str) -> list[str]:
        """Names of the text fields that have no text in ``language``."""
        missing = []
        for name in ("title", "message", "cause", "workaround"):
            value: Localized | None = getattr(self, name)
            if value is not None and not value.covers(language):
                missing.append(name)
        return missing


@dataclass(frozen=True)
class Snapshot:
    """An incident as the store knows it: ops' description plus the store's revision number."""

    incident: Incident
    revision: int
    first_seen_at: datetime
    changed_at: datetime
    previous_status: str | None = None


@dataclass(frozen=True)
class ThreadState:
    """What one channel has already said about one incident."""

    incident_id: str
    channel: str
    last_revision: int
    last_kind: PostKind
    last_status: str
    last_planned_at: datetime
    promised_at: datetime | None  # None once closed
    post_count: int
    closed: bool
    last_post_key: str | None  # idempotency key of the thread's last part recorded
    reminder_count: int = 0


@dataclass(frozen=True)
class PlannedPost:
    """The planner's decision: post ``kind`` about ``revision`` on ``channel`` now."""

    incident_id: str
    channel: str
    kind: PostKind
    revision: int
    sequence: int  # position of this post in the thread, from 1
    planned_at: datetime
    next_update_at: datetime | None  # the promise this post makes; None for a final post

    def key(self, part: int = 1) -> str:
        """The idempotency key of one part: stable across restarts and replays."""
        return (
            f"{self.incident_id}:r{self.revision}:{self.channel}:"
            f"{self.kind.value}.{self.sequence}:p{part}"
        )


@dataclass(frozen=True)
class OutboxPost:
    """One part of one post as recorded in the outbox, ready to deliver."""

    key: str
    channel: str
    incident_id: str
    kind: PostKind
    revision: int
    sequence: int
    part: int
    parts: int
    text: str
    length: int
    limit: int
    language: str
    reply_to_key: str | None
    state: PostState
    planned_at: datetime
    next_update_at: datetime | None = None  # the promise this post makes
    remote_id: str | None = None
    remote_url: str | None = None
    attempts: int = 0
    last_error: str | None = None
    sent_at: datetime | None = None
    next_attempt_at: datetime | None = None


@dataclass(frozen=True)
class ChannelInfo:
    """What templates and the planner need to know of a channel."""

    name: str
    platform: str  # "x", "mastodon" or "dryrun"
    language: str
