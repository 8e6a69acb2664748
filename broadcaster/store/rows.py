"""Rows of the outbox and thread tables as the model's types, for every backend.

Both backends keep the same columns; they differ only in how a time comes back (SQLite:
ISO 8601 text; PostgreSQL: an aware datetime), which ``when`` converts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from ..model import OutboxPost, PostKind, PostState, ThreadState, ThreadTiming

When = Callable[[Any], datetime | None]


class Row(Protocol):
    """A row read by name (sqlite3.Row, psycopg's dict rows)."""

    def __getitem__(self, key: str, /) -> Any: ...


def _required(when: When, value: Any) -> datetime:
    at = when(value)
    assert at is not None, "a NOT NULL time column"
    return at


def thread_from_row(r: Row, when: When) -> ThreadState:
    return ThreadState(
        incident_id=r["incident_id"],
        channel=r["channel"],
        last_revision=r["last_revision"],
        last_kind=PostKind(r["last_kind"]),
        last_status=r["last_status"],
        last_planned_at=_required(when, r["last_planned_at"]),
        promised_at=when(r["promised_at"]),
        post_count=r["post_count"],
        reminder_count=r["reminder_count"],
        closed=bool(r["closed"]),
        last_post_key=r["last_post_key"],
        reopened_at=when(r["reopened_at"]),
    )


def post_from_row(r: Row, when: When) -> OutboxPost:
    return OutboxPost(
        key=r["key"],
        channel=r["channel"],
        incident_id=r["incident_id"],
        kind=PostKind(r["kind"]),
        revision=r["revision"],
        sequence=r["sequence"],
        part=r["part"],
        parts=r["parts"],
        text=r["text"],
        length=r["length"],
        limit=r["max_length"],
        language=r["language"],
        reply_to_key=r["reply_to_key"],
        state=PostState(r["state"]),
        planned_at=_required(when, r["planned_at"]),
        next_update_at=when(r["promised_at"]),
        remote_id=r["remote_id"],
        remote_url=r["remote_url"],
        attempts=r["attempts"],
        last_error=r["last_error"],
        sent_at=when(r["sent_at"]),
        next_attempt_at=when(r["next_attempt_at"]),
    )


TIMING_COLUMNS = (
    "i.id, i.revision, i.closed, {asked}, t.channel, {kind}, {status}, {starts}, "
    "t.last_revision, t.closed, t.promised_at, t.last_planned_at"
)
"""The columns of ``thread_timings``' query, in the order ``timing_from_row`` reads them:
``{asked}``, ``{kind}``, ``{status}`` and ``{starts}`` are the backend's way to read the
incident's JSON (ISO text for the times, whatever the backend)."""


def timing_from_row(r: Sequence[Any], when: When) -> ThreadTiming:
    """A row of ``thread_timings``' query, by position (thousands per plan: kept lean)."""
    (
        key,
        revision,
        final,
        asked,
        channel,
        kind,
        status,
        starts,
        last,
        closed,
        promised,
        planned,
    ) = r
    return ThreadTiming(
        key,
        revision,
        bool(final),
        datetime.fromisoformat(asked) if asked else None,
        channel,
        kind or "incident",
        status or "",
        datetime.fromisoformat(starts) if starts else None,
        last if channel is not None else 0,
        bool(closed),
        when(promised),
        when(planned),
    )
