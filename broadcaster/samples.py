"""The sample incidents ``Renderer.check`` renders every template against.

Built in UTC, rendered in whatever timezone is configured. Every time has its own minute so
that the promised clock time cannot appear in a text by coincidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .model import (
    Incident,
    IncidentKind,
    Localized,
    PlannedPost,
    PostKind,
    Snapshot,
    sample_incident,
)


@dataclass(frozen=True)
class Sample:
    label: str
    incident: Incident
    now: datetime
    previous_status: str | None = None
    next_update: datetime | None = None

    def planned(self, kind: PostKind, channel: str) -> tuple[Snapshot, PlannedPost]:
        snapshot = Snapshot(
            self.incident, 2, self.incident.started_at, self.now, self.previous_status
        )
        post = PlannedPost(
            incident_id=self.incident.id,
            channel=channel,
            kind=kind,
            revision=2,
            sequence=1 if kind in (PostKind.OPENED, PostKind.SCHEDULED) else 3,
            planned_at=self.now,
            next_update_at=None if kind.is_final else self.next_update,
        )
        return snapshot, post


def _utc(day: int, hour: int, minute: int) -> datetime:
    return datetime(2017, 11, day, hour, minute, tzinfo=UTC)


def _t(text: str) -> Localized:
    return Localized.of(text)  # type: ignore[return-value]


_URL = "https://status.example.com/incidents/sample?id=42"


_INCIDENT = Incident(
    id="sample",
    title=_t("Sample outage"),
    status="investigating",
    started_at=_utc(9, 6, 23),
)
_MAINTENANCE = Incident(
    id="sample-maintenance",
    kind=IncidentKind.MAINTENANCE,
    title=_t("Sample maintenance"),
    status="scheduled",
    starts_at=_utc(9, 21, 0),
    ends_at=_utc(9, 22, 30),
    started_at=_utc(9, 21, 0),
)


def _incident(full: bool = False, **kw: Any) -> Incident:
    """A sample incident; ``full`` sets every field that has a declared sample value."""
    return sample_incident(full, _INCIDENT, **kw)


def _maintenance(full: bool = False, **kw: Any) -> Incident:
    return sample_incident(full, _MAINTENANCE, **kw)


INCIDENT_SAMPLES = (
    Sample("incident, minimal", _incident(), _utc(9, 6, 31), None, _utc(9, 7, 18)),
    Sample(
        "incident, all fields, identified",
        _incident(True, status="identified"),
        _utc(9, 8, 38),
        "investigating",
        _utc(9, 9, 25),
    ),
    Sample(
        "incident, monitoring, across midnight",
        _incident(
            status="monitoring",
            started_at=_utc(8, 20, 5),
            services=("VPS",),
            severity="minor",
            message=_t("Fix applied."),
        ),
        _utc(9, 22, 40),
        "identified",
        _utc(9, 23, 27),
    ),
    Sample(
        "incident, unchanged status",
        _incident(status="identified", regions=("SBG",), message=_t("Still on it.")),
        _utc(9, 9, 14),
        "identified",
        _utc(9, 9, 59),
    ),
    Sample(
        "incident, reopened",
        _incident(status="investigating", regions=("SBG",)),
        _utc(9, 12, 10),
        "resolved",
        _utc(9, 12, 57),
    ),
)
RESOLVED_SAMPLES = (
    Sample(
        "resolved, all fields, no data lost",
        _incident(True, status="resolved", resolved_at=_utc(9, 9, 45)),
        _utc(9, 9, 50),
        "monitoring",
    ),
    Sample("resolved, minimal", _incident(status="resolved"), _utc(9, 10, 2), "investigating"),
    Sample(
        "resolved, data lost, no links",
        _incident(status="resolved", resolved_at=_utc(10, 1, 12), data_loss=True),
        _utc(10, 1, 14),
        "monitoring",
    ),
    Sample(
        "resolved, data lost, with link",
        _incident(status="resolved", data_loss=True, url=_URL),
        _utc(9, 11, 3),
        "identified",
    ),
)
MAINTENANCE_SAMPLES = (
    Sample(
        "maintenance, announced a week ahead, all fields",
        _maintenance(
            True, starts_at=_utc(16, 21, 0), ends_at=_utc(16, 22, 30), started_at=_utc(16, 21, 0)
        ),
        _utc(9, 10, 12),
        None,
        _utc(16, 20, 0),
    ),
    Sample("maintenance, minimal", _maintenance(), _utc(9, 20, 7), None, _utc(9, 20, 54)),
    Sample(
        "maintenance, window across midnight",
        _maintenance(starts_at=_utc(9, 22, 0), ends_at=_utc(10, 2, 0), services=("VPS",)),
        _utc(9, 21, 3),
        None,
        _utc(9, 21, 50),
    ),
    Sample("maintenance, start time passed", _maintenance(), _utc(9, 21, 9), None, _utc(9, 21, 56)),
    Sample(
        "maintenance, without times",
        _maintenance(starts_at=None, ends_at=None),
        _utc(9, 20, 11),
        None,
        _utc(9, 20, 58),
    ),
    Sample(
        "maintenance in progress, all fields",
        _maintenance(True, status="in_progress"),
        _utc(9, 21, 4),
        "scheduled",
        _utc(9, 21, 51),
    ),
    Sample(
        "maintenance running late",
        _maintenance(status="in_progress", message=_t("Taking longer than planned.")),
        _utc(9, 22, 41),
        "in_progress",
        _utc(9, 23, 28),
    ),
)
COMPLETED_SAMPLES = (
    Sample(
        "maintenance completed, all fields",
        _maintenance(True, status="completed", resolved_at=_utc(9, 22, 20)),
        _utc(9, 22, 24),
        "in_progress",
    ),
    Sample(
        "maintenance completed, minimal",
        _maintenance(status="completed"),
        _utc(9, 22, 33),
        "in_progress",
    ),
    Sample(
        "maintenance completed, without times",
        _maintenance(status="completed", starts_at=None, ends_at=None),
        _utc(9, 22, 35),
        "scheduled",
    ),
)


def samples_for(kind: PostKind) -> tuple[Sample, ...]:
    """The sample incidents a template of ``kind`` must render, as the planner uses kinds."""
    if kind is PostKind.OPENED:
        return INCIDENT_SAMPLES
    if kind in (PostKind.UPDATE, PostKind.REMINDER):
        return INCIDENT_SAMPLES + MAINTENANCE_SAMPLES
    if kind in (PostKind.SCHEDULED, PostKind.STARTED):
        return MAINTENANCE_SAMPLES
    if kind is PostKind.RESOLVED:
        return RESOLVED_SAMPLES
    return COMPLETED_SAMPLES
