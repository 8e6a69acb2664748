"""Rows of the outbox and thread tables as the model's types, for every backend.

Both backends keep the same columns; they differ only in how a time comes back (SQLite:
ISO 8601 text; PostgreSQL: an aware datetime), which ``when`` converts.
"""

from __future__ import annotations

from collections.abc import Callable
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


def timing_from_row(r: Row, when: When) -> ThreadTiming:
    """A row of ``thread_timings``' query; ``asked_at`` and ``starts_at`` are the ISO text
    the incident's JSON holds, whatever the backend."""
    asked, starts = r["asked_at"], r["starts_at"]
    channel = r["channel"]
    return ThreadTiming(
        incident_id=r["incident_id"],
        revision=r["revision"],
        final=bool(r["final"]),
        asked_at=datetime.fromisoformat(asked) if asked else None,
        channel=channel,
        kind=r["kind"] or "incident",
        status=r["status"] or "",
        starts_at=datetime.fromisoformat(starts) if starts else None,
        last_revision=r["last_revision"] if channel is not None else 0,
        closed=bool(r["closed"]) if channel is not None else False,
        promised_at=when(r["promised_at"]),
        last_planned_at=when(r["last_planned_at"]),
    )
