"""The SQLite store (WAL): incidents with revisions, threads, the outbox, channel state.

Every planned post is written here, with its exact text and idempotency key, before anyone
tries to deliver it; it is marked sent only once the platform confirmed it. A restart
therefore resumes from here without re-posting and without forgetting anything due.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ..clock import utcnow
from ..model import (
    TIMING_FIELDS,
    Incident,
    OutboxPost,
    PlannedPost,
    PostState,
    Snapshot,
    ThreadState,
    ThreadTiming,
)
from .contract import (
    ChannelChange,
    ChannelState,
    DataStore,
    Lease,
    PostPart,
    StoreError,
    StoreProblem,
    ThreadKey,
)
from .rows import TIMING_COLUMNS, post_from_row, thread_from_row, timing_from_row
from .sqlite_schema import MIGRATIONS


def _identity(path: str) -> tuple[int, int] | None:
    """The file a path names (device, inode), or None if it names nothing. Any other
    error (EACCES, ESTALE on NFS) is raised: it says nothing about the file being gone."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return st.st_dev, st.st_ino


class TransactionAborted(sqlite3.OperationalError):
    """SQLite rolled back a whole batch; the plan must be retried as a whole."""


OPEN_STATES = (PostState.PENDING.value, PostState.SENDING.value)

# The incidents ``i`` the planner may still post about (``snapshots(active_only=True)``).
ACTIVE = (
    "(i.closed = 0 OR EXISTS (SELECT 1 FROM threads a WHERE "
    "a.incident_id = i.id AND (a.closed = 0 OR a.last_revision < i.revision)))"
)


def _ts(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt is not None else None


def _dt(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class Store(DataStore):
    """Thread-safe access to one SQLite database. One connection, serialised by a lock."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._depth = 0
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a post recorded as sent must still be recorded after a power cut.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._migrate()
        # The file opened: writes keep reaching it even once its path is deleted or replaced.
        try:
            self._file = _identity(self.path) if self.path != ":memory:" else None
        except OSError:
            self._file = None  # cannot be told apart: not watched rather than halting for it
        # One instance per data directory (flock): it holds every channel's lease.
        self._leases: dict[str, Lease] = {}
        self._instances: dict[str, datetime] = {}

    def _migrate(self) -> None:
        """Bring the schema up to date, under SQLite's own write lock (BEGIN IMMEDIATE)."""
        with self.transaction() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise StoreError(
                    [
                        StoreProblem(
                            self.path,
                            None,
                            f"the store's schema is version {version}, newer than this "
                            f"broadcaster knows ({len(MIGRATIONS)}): upgrade broadcaster",
                        )
                    ]
                )
            for number in range(version + 1, len(MIGRATIONS) + 1):
                for statement in MIGRATIONS[number - 1].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {number}")

    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    # -- leases: trivially held (one daemon per data directory) ---------------------------

    def acquire_lease(self, channel: str, holder: str, ttl: timedelta) -> Lease | None:
        with self._lock:
            held = self._leases.get(channel)
            token = held.token if held is not None and held.holder == holder else 1
            if held is not None and held.holder != holder:
                token = held.token + 1
            lease = Lease(channel, holder, token, utcnow() + ttl)
            self._leases[channel] = lease
            return lease

    def release_lease(self, lease: Lease) -> None:
        with self._lock:
            if self._leases.get(lease.channel) == lease:
                del self._leases[lease.channel]

    def leases(self) -> dict[str, Lease]:
        with self._lock:
            return dict(self._leases)

    def heartbeat(self, instance: str, ttl: timedelta) -> None:
        with self._lock:
            self._instances[instance] = utcnow() + ttl

    def instances(self) -> dict[str, datetime]:
        with self._lock:
            return dict(self._instances)

    def lost(self) -> str | None:
        if self._file is None:
            return None
        try:
            named = _identity(self.path)
        except OSError:
            return None  # a passing error (EACCES, ESTALE) is not a lost store: asked again
        if named == self._file:
            return None
        how = "deleted" if named is None else "replaced"
        return (
            f"the store {self.path} was {how}: what is recorded now would be lost at the "
            "next start, which would announce everything again; restart this daemon"
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._depth:
                # Inside batch(): a savepoint, so one failed write undoes only itself and
                # the batch still commits the rest in one go.
                if not self._db.in_transaction:
                    # SQLite aborted the whole batch (disk full, I/O error): nothing of it
                    # is left to build on; a write now would commit on its own.
                    raise TransactionAborted("the enclosing transaction was rolled back")
                name = f"sp{self._depth}"
                self._depth += 1
                self._db.execute(f"SAVEPOINT {name}")
                try:
                    yield self._db
                except BaseException:
                    if not self._db.in_transaction:
                        raise  # the whole batch is gone: let the caller see the real error
                    self._db.execute(f"ROLLBACK TO {name}")
                    self._db.execute(f"RELEASE {name}")
                    raise
                finally:
                    self._depth -= 1
                self._db.execute(f"RELEASE {name}")
                return
            self._depth += 1
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
            finally:
                self._depth -= 1

    def in_transaction(self) -> bool:
        return self._db.in_transaction

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group several writes into one transaction: one fsync instead of one per post.

        All or nothing: after a crash, either every post of the batch is recorded with its
        thread state, or none is and the planner decides again.
        """
        with self.transaction():
            yield

    def copy_to_memory(self) -> Store:
        copy = Store(":memory:")
        with self._lock:
            self._db.backup(copy._db)  # the schema version comes along: nothing to migrate
        return copy

    # -- incidents -----------------------------------------------------------------------

    def apply_incidents(
        self, incidents: Iterable[Incident], now: datetime, *, source: str | None = None
    ) -> list[str]:
        """Record ops' latest description of these incidents; returns ids that changed.

        The revision increases only on a change worth a public update (see
        ``Incident.change_fingerprint``); other edits refresh the snapshot silently and show
        in the next post.

        With ``source``, an incident that source already described identically is skipped:
        a state file re-read after a restart, or saved for another incident's sake, must not
        undo what a queue event changed since. The newest word on an incident wins.
        """
        changed: list[str] = []
        with self.transaction() as db:
            for incident in incidents:
                data = json.dumps(incident.to_json(), sort_keys=True)
                if source is not None:
                    digest = text_hash(json.dumps(incident.content_json(), sort_keys=True))
                    mark = db.execute(
                        "SELECT digest FROM source_marks WHERE source = ? AND incident_id = ?",
                        (source, incident.id),
                    ).fetchone()
                    if mark is not None and mark["digest"] == digest:
                        continue
                    db.execute(
                        "INSERT OR REPLACE INTO source_marks VALUES (?, ?, ?)",
                        (source, incident.id, digest),
                    )
                if self._apply_one(db, incident, data, now):
                    changed.append(incident.id)
        return changed

    def source_mark(self, source: str, incident_id: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT digest FROM source_marks WHERE source = ? AND incident_id = ?",
                (source, incident_id),
            ).fetchone()
        return row["digest"] if row else None

    def _apply_one(
        self, db: sqlite3.Connection, incident: Incident, data: str, now: datetime
    ) -> bool:
        fingerprint = text_hash(json.dumps(incident.change_fingerprint()))
        row = db.execute(
            "SELECT revision, fingerprint, data FROM incidents WHERE id = ?", (incident.id,)
        ).fetchone()
        if row is None:
            db.execute(
                "INSERT INTO incidents VALUES (?, 1, ?, ?, ?, ?, NULL, ?)",
                (incident.id, fingerprint, data, _ts(now), _ts(now), int(incident.is_final)),
            )
            db.execute("INSERT INTO revisions VALUES (?, 1, ?, ?)", (incident.id, data, _ts(now)))
            return True
        if row["fingerprint"] != fingerprint:
            revision = row["revision"] + 1
            previous = Incident.from_json(json.loads(row["data"])).status
            db.execute(
                "UPDATE incidents SET revision = ?, fingerprint = ?, data = ?, "
                "changed_at = ?, previous_status = ?, closed = ? WHERE id = ?",
                (
                    revision,
                    fingerprint,
                    data,
                    _ts(now),
                    previous,
                    int(incident.is_final),
                    incident.id,
                ),
            )
            db.execute(
                "INSERT INTO revisions VALUES (?, ?, ?, ?)", (incident.id, revision, data, _ts(now))
            )
            return True
        if row["data"] != data:
            db.execute("UPDATE incidents SET data = ? WHERE id = ?", (data, incident.id))
            return True
        return False

    def snapshots(
        self, *, active_only: bool = False, ids: Collection[str] | None = None
    ) -> list[Snapshot]:
        """Every incident; with ``active_only``, those the planner may still post about:
        open ones, and closed ones whose threads are not all closed at their revision."""
        query = "SELECT * FROM incidents i WHERE 1=1"
        args: list[Any] = []
        if active_only:
            query += f" AND {ACTIVE}"
        if ids is not None:
            query += " AND i.id IN (SELECT value FROM json_each(?))"
            args.append(json.dumps(list(ids)))
        with self._lock:
            rows = self._db.execute(query + " ORDER BY i.first_seen_at, i.id", args).fetchall()
        return [self._snapshot(r) for r in rows]

    def snapshot(self, incident_id: str) -> Snapshot | None:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM incidents WHERE id = ?", (incident_id,)
            ).fetchone()
        return self._snapshot(row) if row else None

    @staticmethod
    def _snapshot(row: sqlite3.Row) -> Snapshot:
        return Snapshot(
            incident=Incident.from_json(json.loads(row["data"])),
            revision=row["revision"],
            first_seen_at=_dt(row["first_seen_at"]),  # type: ignore[arg-type]
            changed_at=_dt(row["changed_at"]),  # type: ignore[arg-type]
            previous_status=row["previous_status"],
        )

    # -- threads and the outbox ----------------------------------------------------------

    def threads(self, ids: Collection[str] | None = None) -> dict[ThreadKey, ThreadState]:
        query, args = "SELECT * FROM threads", []
        if ids is not None:
            query += " WHERE incident_id IN (SELECT value FROM json_each(?))"
            args.append(json.dumps(list(ids)))
        with self._lock:
            rows = self._db.execute(query, args).fetchall()
        return {(r["incident_id"], r["channel"]): self._thread(r) for r in rows}

    def thread_timings(self, ids: Collection[str] | None = None) -> list[ThreadTiming]:
        query, args = "", []
        if ids is not None:
            query, args = " AND i.id IN (SELECT value FROM json_each(?))", [json.dumps(list(ids))]
        columns = TIMING_COLUMNS.format(
            **{k: f"json_extract(i.data, '$.{f}')" for k, f in TIMING_FIELDS.items()}
        )
        with self._lock:
            cursor = self._db.cursor()
            cursor.row_factory = None  # plain tuples: read by position, fast
            rows = cursor.execute(
                f"SELECT {columns} FROM incidents i LEFT JOIN threads t "
                f"ON t.incident_id = i.id WHERE {ACTIVE}{query} ORDER BY i.first_seen_at, i.id",
                args,
            ).fetchall()
        return [timing_from_row(r, _dt) for r in rows]

    def change_token(self) -> object | None:
        if self.path == ":memory:":
            return 0  # no other connection can reach it
        with self._lock:
            return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    @staticmethod
    def _thread(r: sqlite3.Row) -> ThreadState:
        return thread_from_row(r, _dt)

    def is_duplicate_text(self, channel: str, text: str) -> bool:
        """Whether this exact text already went, or is going, out on this channel."""
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM posts WHERE channel = ? AND text_hash = ? AND state != ? LIMIT 1",
                (channel, text_hash(text), PostState.SUPERSEDED.value),
            ).fetchone()
        return row is not None

    def record_post(
        self,
        planned: PlannedPost,
        parts: Sequence[PostPart],
        language: str,
        thread: ThreadState,
        *,
        reply_to: str | None,
        supersedes: Iterable[str] = (),
    ) -> None:
        with self.transaction() as db:
            superseded = list(supersedes)
            if superseded:
                # Only what is still pending: a part already handed to the platform may be
                # published, and must stay visible to the look-up before any re-send.
                db.executemany(
                    "UPDATE posts SET state = ? WHERE key = ? AND state = ?",
                    [(PostState.SUPERSEDED.value, k, PostState.PENDING.value) for k in superseded],
                )
            for index, (text, length, limit) in enumerate(parts, start=1):
                key = planned.key(index)
                db.execute(
                    "INSERT INTO posts (key, channel, incident_id, kind, revision, sequence, part, "
                    "parts, text, text_hash, length, max_length, language, reply_to_key, state, "
                    "planned_at, promised_at) VALUES "
                    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        key,
                        planned.channel,
                        planned.incident_id,
                        planned.kind.value,
                        planned.revision,
                        planned.sequence,
                        index,
                        len(parts),
                        text,
                        text_hash(text),
                        length,
                        limit,
                        language,
                        reply_to,
                        PostState.PENDING.value,
                        _ts(planned.planned_at),
                        _ts(planned.next_update_at),
                    ),
                )
                reply_to = key
            db.execute(
                "INSERT OR REPLACE INTO threads (incident_id, channel, last_revision, "
                "last_kind, last_status, last_planned_at, promised_at, post_count, "
                "reminder_count, closed, last_post_key, reopened_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    thread.incident_id,
                    thread.channel,
                    thread.last_revision,
                    thread.last_kind.value,
                    thread.last_status,
                    _ts(thread.last_planned_at),
                    _ts(thread.promised_at),
                    thread.post_count,
                    thread.reminder_count,
                    int(thread.closed),
                    thread.last_post_key,
                    _ts(thread.reopened_at),
                ),
            )

    def thread_tail(self, incident_id: str, channel: str) -> list[OutboxPost]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM posts WHERE incident_id = ? AND channel = ? AND state IN (?, ?) "
                "UNION ALL SELECT * FROM (SELECT * FROM posts "
                "  WHERE incident_id = ? AND channel = ? AND state = ? ORDER BY seq DESC LIMIT 1) "
                "ORDER BY seq",
                (incident_id, channel, *OPEN_STATES, incident_id, channel, PostState.SENT.value),
            ).fetchall()
        return [self._post(r) for r in rows]

    def stale_posts(self, now: datetime) -> list[list[OutboxPost]]:
        """Whole unsent posts whose promise has passed while they waited (pause, budget).

        Publishing "next update by 10:30" at 10:45 would break the promise in the very post
        that makes it; such posts are re-planned with a fresh promise instead.
        """
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM posts p WHERE state = ? AND promised_at IS NOT NULL "
                "AND NOT EXISTS (SELECT 1 FROM posts q WHERE q.incident_id = p.incident_id "
                "  AND q.channel = p.channel AND q.sequence = p.sequence "
                "  AND q.state != ?) ORDER BY seq",
                (PostState.PENDING.value, PostState.PENDING.value),
            ).fetchall()
        groups: dict[tuple[str, str, int], list[OutboxPost]] = {}
        for r in rows:
            post = self._post(r)
            assert post.next_update_at is not None
            if post.next_update_at <= now:
                groups.setdefault((post.incident_id, post.channel, post.sequence), []).append(post)
        return list(groups.values())

    @staticmethod
    def _post(r: sqlite3.Row) -> OutboxPost:
        return post_from_row(r, _dt)

    def next_to_deliver(self, channel: str) -> OutboxPost | None:
        """The channel's oldest undelivered post: posts go out strictly in planned order."""
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM posts WHERE channel = ? AND state IN (?, ?) ORDER BY seq LIMIT 1",
                (channel, *OPEN_STATES),
            ).fetchone()
        return self._post(row) if row else None

    def post(self, key: str) -> OutboxPost | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM posts WHERE key = ?", (key,)).fetchone()
        return self._post(row) if row else None

    def latest_sent_before(self, post: OutboxPost) -> OutboxPost | None:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM posts WHERE incident_id = ? AND channel = ? AND state = ? "
                "AND seq < (SELECT seq FROM posts WHERE key = ?) ORDER BY seq DESC LIMIT 1",
                (post.incident_id, post.channel, PostState.SENT.value, post.key),
            ).fetchone()
        return self._post(row) if row else None

    def thread_root(self, incident_id: str, channel: str) -> OutboxPost | None:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM posts WHERE incident_id = ? AND channel = ? AND state = ? "
                "ORDER BY seq LIMIT 1",
                (incident_id, channel, PostState.SENT.value),
            ).fetchone()
        return self._post(row) if row else None

    def mark_sending(self, key: str, *, lease: Lease | None = None) -> bool:
        """Recorded before the request leaves: after a crash, the outcome is 'unknown'.

        False if the post is no longer deliverable (superseded by a plan that ran since it
        was picked): it must then not be sent at all.
        """
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE posts SET state = ?, attempts = attempts + 1 WHERE key = ? "
                "AND state IN (?, ?)",
                (PostState.SENDING.value, key, *OPEN_STATES),
            )
            return cursor.rowcount == 1

    def mark_sent(
        self,
        key: str,
        remote_id: str,
        url: str | None,
        now: datetime,
        *,
        lease: Lease | None = None,
    ) -> None:
        with self._lock:
            relaxed = self._depth == 0 and self.path != ":memory:"
            if relaxed:
                # No fsync of its own: the next FULL commit (the next post's mark_sending)
                # makes it durable. Lost to a power cut in between, the post is still
                # 'sending', so it is looked up on the platform, never blindly re-sent.
                # A process crash loses nothing either way (WAL).
                self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                with self.transaction() as db:
                    db.execute(
                        "UPDATE posts SET state = ?, remote_id = ?, remote_url = ?, "
                        "sent_at = ?, last_error = NULL, next_attempt_at = NULL WHERE key = ?",
                        (PostState.SENT.value, remote_id, url, _ts(now.astimezone(UTC)), key),
                    )
            finally:
                if relaxed:
                    self._db.execute("PRAGMA synchronous=FULL")

    def mark_failed(self, key: str, error: str, *, lease: Lease | None = None) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE posts SET state = ?, last_error = ? WHERE key = ?",
                (PostState.FAILED.value, error, key),
            )

    def retry_later(
        self,
        key: str,
        error: str,
        at: datetime,
        *,
        outcome_unknown: bool,
        lease: Lease | None = None,
    ) -> None:
        """Keep the post for another try; 'sending' means: look for it before re-sending."""
        state = PostState.SENDING if outcome_unknown else PostState.PENDING
        with self.transaction() as db:
            db.execute(
                "UPDATE posts SET state = ?, last_error = ?, next_attempt_at = ? WHERE key = ?",
                (state.value, error, _ts(at), key),
            )

    def posts(
        self, *, channel: str | None = None, states: Iterable[PostState] = ()
    ) -> list[OutboxPost]:
        query = "SELECT * FROM posts WHERE 1=1"
        args: list[Any] = []
        if channel:
            query += " AND channel = ?"
            args.append(channel)
        wanted = [s.value for s in states]
        if wanted:
            query += f" AND state IN ({', '.join('?' * len(wanted))})"
            args.extend(wanted)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY seq", args).fetchall()
        return [self._post(r) for r in rows]

    def sent_times(self, channel: str, since: datetime) -> list[datetime]:
        """When this channel's posts were confirmed, oldest first, since ``since``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT sent_at FROM posts WHERE channel = ? AND state = ? AND sent_at >= ? "
                "ORDER BY sent_at",
                (channel, PostState.SENT.value, _ts(since.astimezone(UTC))),
            ).fetchall()
        return [_dt(r["sent_at"]) for r in rows]  # type: ignore[misc]

    def counts(self) -> dict[tuple[str, PostState], int]:
        """(channel, state) → number of posts."""
        with self._lock:
            rows = self._db.execute(
                "SELECT channel, state, COUNT(*) AS n FROM posts GROUP BY channel, state"
            ).fetchall()
        return {(r["channel"], PostState(r["state"])): r["n"] for r in rows}

    # -- channel state -------------------------------------------------------------------

    def update_channel(self, channel: str, change: ChannelChange, now: datetime) -> None:
        healthy = True if change.recovered else change.healthy
        with self.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO channel_state (channel, updated_at) VALUES (?, ?)",
                (channel, _ts(now)),
            )
            if healthy is not None:
                db.execute(
                    "UPDATE channel_state SET healthy = ? WHERE channel = ?",
                    (int(healthy), channel),
                )
            if change.paused_until is not None or change.recovered:
                db.execute(
                    "UPDATE channel_state SET paused_until = ? WHERE channel = ?",
                    (_ts(change.paused_until), channel),
                )
            if change.last_error is not None or change.recovered:
                db.execute(
                    "UPDATE channel_state SET last_error = ? WHERE channel = ?",
                    (change.last_error, channel),
                )
            if change.replies_refused is not None:
                db.execute(
                    "UPDATE channel_state SET replies_refused = ? WHERE channel = ?",
                    (int(change.replies_refused), channel),
                )
            if change.max_characters is not None:
                db.execute(
                    "UPDATE channel_state SET max_characters = ? WHERE channel = ?",
                    (change.max_characters, channel),
                )
            db.execute(
                "UPDATE channel_state SET updated_at = ? WHERE channel = ?", (_ts(now), channel)
            )

    def channel_states(self) -> dict[str, ChannelState]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM channel_state").fetchall()
        return {
            r["channel"]: ChannelState(
                channel=r["channel"],
                healthy=bool(r["healthy"]),
                paused_until=_dt(r["paused_until"]),
                last_error=r["last_error"],
                replies_refused=bool(r["replies_refused"]),
                max_characters=r["max_characters"],
            )
            for r in rows
        }
