"""The PostgreSQL store: the same contract as SQLite, shared by several instances.

- **Intake and planning once**: every write that reads before it decides (applying
  incidents, a plan in ``batch()``) first locks the one row of ``plan_lock``, so two
  instances take turns and the second sees what the first committed; idempotency keys stay
  unique underneath (a second recording of a key is refused, as in SQLite).
- **Delivery by one holder per channel**: a ``leases`` row per channel (holder, expiry,
  fencing token incremented at each takeover), on the database's clock. Every mark a worker
  makes names its lease and runs in a transaction that checks it (row locked ``FOR SHARE``,
  so a takeover waits for it, then sees the post ``sending`` and looks it up before any
  re-send); the post itself is claimed ``FOR UPDATE SKIP LOCKED``.
- **Migrations**: versioned, applied at open inside one transaction holding an exclusive
  lock on ``schema_migrations``; a schema newer than this code is refused.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row, tuple_row
from psycopg_pool import ConnectionPool

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
    LeaseLost,
    PostPart,
    StoreError,
    StoreProblem,
    StoreUnavailable,
    ThreadKey,
)
from .postgres_schema import COPIED, MIGRATIONS
from .rows import TIMING_COLUMNS, post_from_row, thread_from_row, timing_from_row
from .sqlite import Store, text_hash

Row = dict[str, Any]

OPEN_STATES = (PostState.PENDING.value, PostState.SENDING.value)

# The incidents ``i`` the planner may still post about (``snapshots(active_only=True)``).
ACTIVE = (
    "(NOT i.closed OR EXISTS (SELECT 1 FROM threads a WHERE "
    "a.incident_id = i.id AND (NOT a.closed OR a.last_revision < i.revision)))"
)


class PostgresStore(DataStore):
    """A pool of connections to one PostgreSQL database. Thread-safe: each thread's batch
    has its own connection; reads outside a batch borrow one from the pool."""

    def __init__(
        self, url: str, *, display: str | None = None, pool_size: int = 8, timeout: float = 3
    ) -> None:
        self.display = display or "postgresql"
        self._local = threading.local()
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs={
                "autocommit": True,
                "row_factory": dict_row,
                "options": "-c timezone=UTC",
                "connect_timeout": max(1, int(timeout)),
            },
            timeout=timeout,
            check=ConnectionPool.check_connection,
            open=False,
            name="broadcaster-store",
        )
        try:
            self._pool.open(wait=True, timeout=timeout)
            self._migrate()
        except (psycopg.Error, StoreUnavailable) as e:
            self._pool.close()
            raise StoreError(
                [StoreProblem(self.display, None, f"cannot open the store: {one_line(e)}")]
            ) from None
        except BaseException:
            self._pool.close()
            raise

    # -- connections and transactions ------------------------------------------------------

    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[Row]]:
        """The thread's batch connection, else one from the pool."""
        current = getattr(self._local, "conn", None)
        if current is not None:
            yield current
            return
        try:
            with self._pool.connection() as conn:
                yield conn  # type: ignore[misc]
        except psycopg.OperationalError as e:
            raise StoreUnavailable(f"{self.display}: {one_line(e)}") from e

    @contextmanager
    def transaction(self, *, serial: bool = False) -> Iterator[psycopg.Connection[Row]]:
        """One transaction (a savepoint inside a batch). ``serial``: take the plan lock
        first, so instances that read-then-write take turns."""
        current: psycopg.Connection[Row] | None = getattr(self._local, "conn", None)
        if current is not None:
            if current.info.transaction_status != psycopg.pq.TransactionStatus.INTRANS:
                raise psycopg.OperationalError("the enclosing transaction was rolled back")
            with current.transaction():
                yield current
            return
        try:
            with self._pool.connection() as conn, conn.transaction():
                if serial:
                    conn.execute("SELECT id FROM plan_lock FOR UPDATE")
                self._local.conn = conn
                try:
                    yield conn  # type: ignore[misc]
                finally:
                    self._local.conn = None
        except psycopg.OperationalError as e:
            raise StoreUnavailable(f"{self.display}: {one_line(e)}") from e

    @contextmanager
    def batch(self) -> Iterator[None]:
        with self.transaction(serial=True):
            yield

    def in_transaction(self) -> bool:
        conn: psycopg.Connection[Row] | None = getattr(self._local, "conn", None)
        return (
            conn is not None
            and conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        )

    def close(self) -> None:
        self._pool.close()

    def _migrate(self) -> None:
        try:
            with self._conn() as conn, conn.transaction():
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations "
                    "(version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
                )
        except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateTable):
            pass  # another instance created it at the same moment
        with self._conn() as conn, conn.transaction():
            # Several instances starting at once: one migrates, the others wait, then see it.
            conn.execute("LOCK TABLE schema_migrations IN EXCLUSIVE MODE")
            row = conn.execute("SELECT max(version) AS v FROM schema_migrations").fetchone()
            version = (row or {}).get("v") or 0
            if version > len(MIGRATIONS):
                raise StoreError(
                    [
                        StoreProblem(
                            self.display,
                            None,
                            f"the store's schema is version {version}, newer than this "
                            f"broadcaster knows ({len(MIGRATIONS)}): upgrade broadcaster",
                        )
                    ]
                )
            for number in range(version + 1, len(MIGRATIONS) + 1):
                conn.execute(MIGRATIONS[number - 1].encode())
                conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (number,))

    def schema_version(self) -> int:
        with self._conn() as conn:
            row = conn.execute("SELECT max(version) AS v FROM schema_migrations").fetchone()
        return int((row or {}).get("v") or 0)

    def _one(self, query: str, args: Sequence[Any] = ()) -> Row | None:
        with self._conn() as conn:
            return conn.execute(query.encode(), args).fetchone()

    def _all(self, query: str, args: Sequence[Any] = ()) -> list[Row]:
        with self._conn() as conn:
            return conn.execute(query.encode(), args).fetchall()

    def copy_to_memory(self) -> DataStore:
        """An in-memory SQLite copy: previews never write to the shared database."""
        copy = Store(":memory:")
        with self._conn() as conn, copy.transaction() as db:
            for table, columns in COPIED.items():
                rows = conn.execute(
                    sql.SQL("SELECT {} FROM {} ").format(
                        sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(table)
                    )
                    + sql.SQL("ORDER BY 1")
                ).fetchall()
                marks = ", ".join("?" * len(columns))
                db.executemany(
                    f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",
                    [tuple(_to_sqlite(r[c]) for c in columns) for r in rows],
                )
        return copy

    # -- incidents -------------------------------------------------------------------------

    def apply_incidents(
        self, incidents: Iterable[Incident], now: datetime, *, source: str | None = None
    ) -> list[str]:
        changed: list[str] = []
        with self.transaction(serial=True) as db:
            for incident in incidents:
                data = json.dumps(incident.to_json(), sort_keys=True)
                if source is not None:
                    digest = text_hash(json.dumps(incident.content_json(), sort_keys=True))
                    mark = db.execute(
                        "SELECT digest FROM source_marks WHERE source = %s AND incident_id = %s",
                        (source, incident.id),
                    ).fetchone()
                    if mark is not None and mark["digest"] == digest:
                        continue
                    db.execute(
                        "INSERT INTO source_marks VALUES (%s, %s, %s) ON CONFLICT "
                        "(source, incident_id) DO UPDATE SET digest = EXCLUDED.digest",
                        (source, incident.id, digest),
                    )
                if self._apply_one(db, incident, data, now):
                    changed.append(incident.id)
        return changed

    def _apply_one(
        self, db: psycopg.Connection[Row], incident: Incident, data: str, now: datetime
    ) -> bool:
        fingerprint = text_hash(json.dumps(incident.change_fingerprint()))
        row = db.execute(
            "SELECT revision, fingerprint, data FROM incidents WHERE id = %s FOR UPDATE",
            (incident.id,),
        ).fetchone()
        if row is None:
            db.execute(
                "INSERT INTO incidents VALUES (%s, 1, %s, %s, %s, %s, NULL, %s)",
                (incident.id, fingerprint, data, now, now, incident.is_final),
            )
            db.execute("INSERT INTO revisions VALUES (%s, 1, %s, %s)", (incident.id, data, now))
            return True
        if row["fingerprint"] != fingerprint:
            revision = row["revision"] + 1
            previous = Incident.from_json(json.loads(row["data"])).status
            db.execute(
                "UPDATE incidents SET revision = %s, fingerprint = %s, data = %s, "
                "changed_at = %s, previous_status = %s, closed = %s WHERE id = %s",
                (revision, fingerprint, data, now, previous, incident.is_final, incident.id),
            )
            db.execute(
                "INSERT INTO revisions VALUES (%s, %s, %s, %s)", (incident.id, revision, data, now)
            )
            return True
        if row["data"] != data:
            db.execute("UPDATE incidents SET data = %s WHERE id = %s", (data, incident.id))
            return True
        return False

    def source_mark(self, source: str, incident_id: str) -> str | None:
        row = self._one(
            "SELECT digest FROM source_marks WHERE source = %s AND incident_id = %s",
            (source, incident_id),
        )
        return row["digest"] if row else None

    def snapshots(
        self, *, active_only: bool = False, ids: Collection[str] | None = None
    ) -> list[Snapshot]:
        query = "SELECT * FROM incidents i WHERE TRUE"
        args: list[Any] = []
        if active_only:
            query += f" AND {ACTIVE}"
        if ids is not None:
            query += " AND i.id = ANY(%s)"
            args.append(list(ids))
        return [_snapshot(r) for r in self._all(query + " ORDER BY i.first_seen_at, i.id", args)]

    def snapshot(self, incident_id: str) -> Snapshot | None:
        row = self._one("SELECT * FROM incidents WHERE id = %s", (incident_id,))
        return _snapshot(row) if row else None

    # -- threads and the outbox --------------------------------------------------------------

    def threads(self, ids: Collection[str] | None = None) -> dict[ThreadKey, ThreadState]:
        query, args = "SELECT * FROM threads", []
        if ids is not None:
            query += " WHERE incident_id = ANY(%s)"
            args.append(list(ids))
        return {(r["incident_id"], r["channel"]): _thread(r) for r in self._all(query, args)}

    def thread_timings(self, ids: Collection[str] | None = None) -> list[ThreadTiming]:
        query, args = "", []
        if ids is not None:
            query, args = " AND i.id = ANY(%s)", [list(ids)]
        columns = TIMING_COLUMNS.format(
            **{k: f"j.data ->> '{f}'" for k, f in TIMING_FIELDS.items()}
        )
        with self._conn() as conn, conn.cursor(row_factory=tuple_row) as cursor:
            rows = cursor.execute(
                f"SELECT {columns} FROM incidents i "
                "CROSS JOIN LATERAL (SELECT i.data::jsonb AS data) j "
                f"LEFT JOIN threads t ON t.incident_id = i.id WHERE {ACTIVE}{query} "
                "ORDER BY i.first_seen_at, i.id".encode(),
                args,
            ).fetchall()
        return [timing_from_row(r, _as_is) for r in rows]

    def is_duplicate_text(self, channel: str, text: str) -> bool:
        row = self._one(
            "SELECT 1 FROM posts WHERE channel = %s AND text_hash = %s AND state != %s LIMIT 1",
            (channel, text_hash(text), PostState.SUPERSEDED.value),
        )
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
        with self.transaction(serial=True) as db:
            superseded = list(supersedes)
            if superseded:
                db.execute(
                    "UPDATE posts SET state = %s WHERE key = ANY(%s) AND state = %s",
                    (PostState.SUPERSEDED.value, superseded, PostState.PENDING.value),
                )
            for index, (text, length, limit) in enumerate(parts, start=1):
                key = planned.key(index)
                db.execute(
                    "INSERT INTO posts (key, channel, incident_id, kind, revision, sequence, "
                    "part, parts, text, text_hash, length, max_length, language, reply_to_key, "
                    "state, planned_at, promised_at) VALUES "
                    "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
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
                        planned.planned_at,
                        planned.next_update_at,
                    ),
                )
                reply_to = key
            db.execute(
                "INSERT INTO threads (incident_id, channel, last_revision, last_kind, "
                "last_status, last_planned_at, promised_at, post_count, reminder_count, "
                "closed, last_post_key, reopened_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (incident_id, channel) DO UPDATE SET "
                "last_revision = EXCLUDED.last_revision, last_kind = EXCLUDED.last_kind, "
                "last_status = EXCLUDED.last_status, last_planned_at = EXCLUDED.last_planned_at, "
                "promised_at = EXCLUDED.promised_at, post_count = EXCLUDED.post_count, "
                "reminder_count = EXCLUDED.reminder_count, closed = EXCLUDED.closed, "
                "last_post_key = EXCLUDED.last_post_key, reopened_at = EXCLUDED.reopened_at",
                (
                    thread.incident_id,
                    thread.channel,
                    thread.last_revision,
                    thread.last_kind.value,
                    thread.last_status,
                    thread.last_planned_at,
                    thread.promised_at,
                    thread.post_count,
                    thread.reminder_count,
                    thread.closed,
                    thread.last_post_key,
                    thread.reopened_at,
                ),
            )

    def thread_tail(self, incident_id: str, channel: str) -> list[OutboxPost]:
        rows = self._all(
            "(SELECT * FROM posts WHERE incident_id = %s AND channel = %s AND state IN (%s, %s)) "
            "UNION ALL (SELECT * FROM posts WHERE incident_id = %s AND channel = %s "
            "AND state = %s ORDER BY seq DESC LIMIT 1) ORDER BY seq",
            (incident_id, channel, *OPEN_STATES, incident_id, channel, PostState.SENT.value),
        )
        return [_post(r) for r in rows]

    def stale_posts(self, now: datetime) -> list[list[OutboxPost]]:
        rows = self._all(
            "SELECT * FROM posts p WHERE state = %s AND promised_at IS NOT NULL "
            "AND promised_at <= %s "
            "AND NOT EXISTS (SELECT 1 FROM posts q WHERE q.incident_id = p.incident_id "
            "  AND q.channel = p.channel AND q.sequence = p.sequence "
            "  AND q.state != %s) ORDER BY seq",
            (PostState.PENDING.value, now, PostState.PENDING.value),
        )
        groups: dict[tuple[str, str, int], list[OutboxPost]] = {}
        for r in rows:
            post = _post(r)
            groups.setdefault((post.incident_id, post.channel, post.sequence), []).append(post)
        return list(groups.values())

    def next_to_deliver(self, channel: str) -> OutboxPost | None:
        row = self._one(
            "SELECT * FROM posts WHERE channel = %s AND state IN (%s, %s) ORDER BY seq LIMIT 1",
            (channel, *OPEN_STATES),
        )
        return _post(row) if row else None

    def post(self, key: str) -> OutboxPost | None:
        row = self._one("SELECT * FROM posts WHERE key = %s", (key,))
        return _post(row) if row else None

    def latest_sent_before(self, post: OutboxPost) -> OutboxPost | None:
        row = self._one(
            "SELECT * FROM posts WHERE incident_id = %s AND channel = %s AND state = %s "
            "AND seq < (SELECT seq FROM posts WHERE key = %s) ORDER BY seq DESC LIMIT 1",
            (post.incident_id, post.channel, PostState.SENT.value, post.key),
        )
        return _post(row) if row else None

    def thread_root(self, incident_id: str, channel: str) -> OutboxPost | None:
        row = self._one(
            "SELECT * FROM posts WHERE incident_id = %s AND channel = %s AND state = %s "
            "ORDER BY seq LIMIT 1",
            (incident_id, channel, PostState.SENT.value),
        )
        return _post(row) if row else None

    @contextmanager
    def _fenced(self, lease: Lease | None) -> Iterator[psycopg.Connection[Row]]:
        """A transaction in which ``lease`` is checked still held, its row locked so that
        no takeover commits before this transaction does."""
        with self.transaction() as db:
            if lease is not None:
                row = db.execute(
                    "SELECT 1 FROM leases WHERE channel = %s AND holder = %s AND token = %s "
                    "AND expires_at > clock_timestamp() FOR SHARE",
                    (lease.channel, lease.holder, lease.token),
                ).fetchone()
                if row is None:
                    raise LeaseLost(f"{lease.holder} no longer holds {lease.channel}")
            yield db

    def mark_sending(self, key: str, *, lease: Lease | None = None) -> bool:
        with self._fenced(lease) as db:
            claimed = db.execute(
                "SELECT key FROM posts WHERE key = %s AND state IN (%s, %s) FOR UPDATE SKIP LOCKED",
                (key, *OPEN_STATES),
            ).fetchone()
            if claimed is None:
                return False
            db.execute(
                "UPDATE posts SET state = %s, attempts = attempts + 1 WHERE key = %s",
                (PostState.SENDING.value, key),
            )
            return True

    def mark_sent(
        self,
        key: str,
        remote_id: str,
        url: str | None,
        now: datetime,
        *,
        lease: Lease | None = None,
    ) -> None:
        with self._fenced(lease) as db:
            db.execute(
                "UPDATE posts SET state = %s, remote_id = %s, remote_url = %s, sent_at = %s, "
                "last_error = NULL, next_attempt_at = NULL WHERE key = %s",
                (PostState.SENT.value, remote_id, url, now.astimezone(UTC), key),
            )

    def mark_failed(self, key: str, error: str, *, lease: Lease | None = None) -> None:
        with self._fenced(lease) as db:
            db.execute(
                "UPDATE posts SET state = %s, last_error = %s WHERE key = %s",
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
        state = PostState.SENDING if outcome_unknown else PostState.PENDING
        with self._fenced(lease) as db:
            db.execute(
                "UPDATE posts SET state = %s, last_error = %s, next_attempt_at = %s WHERE key = %s",
                (state.value, error, at, key),
            )

    def posts(
        self, *, channel: str | None = None, states: Iterable[PostState] = ()
    ) -> list[OutboxPost]:
        query = "SELECT * FROM posts WHERE TRUE"
        args: list[Any] = []
        if channel:
            query += " AND channel = %s"
            args.append(channel)
        wanted = [s.value for s in states]
        if wanted:
            query += " AND state = ANY(%s)"
            args.append(wanted)
        return [_post(r) for r in self._all(query + " ORDER BY seq", args)]

    def sent_times(self, channel: str, since: datetime) -> list[datetime]:
        rows = self._all(
            "SELECT sent_at FROM posts WHERE channel = %s AND state = %s AND sent_at >= %s "
            "ORDER BY sent_at",
            (channel, PostState.SENT.value, since),
        )
        return [r["sent_at"] for r in rows]

    def counts(self) -> dict[tuple[str, PostState], int]:
        rows = self._all("SELECT channel, state, COUNT(*) AS n FROM posts GROUP BY channel, state")
        return {(r["channel"], PostState(r["state"])): r["n"] for r in rows}

    # -- channel state -----------------------------------------------------------------------

    def update_channel(self, channel: str, change: ChannelChange, now: datetime) -> None:
        healthy = True if change.recovered else change.healthy
        sets: list[str] = ["updated_at = %(now)s"]
        if healthy is not None:
            sets.append("healthy = %(healthy)s")
        if change.paused_until is not None or change.recovered:
            sets.append("paused_until = %(paused_until)s")
        if change.last_error is not None or change.recovered:
            sets.append("last_error = %(last_error)s")
        if change.replies_refused is not None:
            sets.append("replies_refused = %(replies_refused)s")
        if change.max_characters is not None:
            sets.append("max_characters = %(max_characters)s")
        values = {
            "channel": channel,
            "now": now,
            "healthy": healthy,
            "paused_until": change.paused_until,
            "last_error": change.last_error,
            "replies_refused": change.replies_refused,
            "max_characters": change.max_characters,
        }
        with self.transaction() as db:
            db.execute(
                "INSERT INTO channel_state (channel, updated_at) VALUES (%(channel)s, %(now)s) "
                "ON CONFLICT (channel) DO NOTHING",
                values,
            )
            db.execute(
                f"UPDATE channel_state SET {', '.join(sets)} WHERE channel = %(channel)s".encode(),
                values,
            )

    def channel_states(self) -> dict[str, ChannelState]:
        return {
            r["channel"]: ChannelState(
                channel=r["channel"],
                healthy=r["healthy"],
                paused_until=r["paused_until"],
                last_error=r["last_error"],
                replies_refused=r["replies_refused"],
                max_characters=r["max_characters"],
            )
            for r in self._all("SELECT * FROM channel_state")
        }

    # -- leases and instances ------------------------------------------------------------------

    def acquire_lease(self, channel: str, holder: str, ttl: timedelta) -> Lease | None:
        with self.transaction() as db:
            row = db.execute(
                "INSERT INTO leases AS l VALUES (%(c)s, %(h)s, 1, clock_timestamp() + %(ttl)s) "
                "ON CONFLICT (channel) DO UPDATE SET holder = EXCLUDED.holder, "
                "  expires_at = EXCLUDED.expires_at, "
                "  token = CASE WHEN l.holder = EXCLUDED.holder AND l.expires_at > "
                "    clock_timestamp() THEN l.token ELSE l.token + 1 END "
                "  WHERE l.holder = EXCLUDED.holder OR l.expires_at <= clock_timestamp() "
                "RETURNING channel, holder, token, expires_at",
                {"c": channel, "h": holder, "ttl": ttl},
            ).fetchone()
        return _lease(row) if row else None

    def release_lease(self, lease: Lease) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE leases SET expires_at = clock_timestamp() "
                "WHERE channel = %s AND holder = %s AND token = %s AND expires_at = %s",
                (lease.channel, lease.holder, lease.token, lease.expires_at),
            )

    def leases(self) -> dict[str, Lease]:
        return {r["channel"]: _lease(r) for r in self._all("SELECT * FROM leases")}

    def heartbeat(self, instance: str, ttl: timedelta) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO instances VALUES (%s, clock_timestamp() + %s) ON CONFLICT (name) "
                "DO UPDATE SET alive_until = EXCLUDED.alive_until",
                (instance, ttl),
            )

    def instances(self) -> dict[str, datetime]:
        rows = self._all(
            "SELECT * FROM instances WHERE alive_until > clock_timestamp() - interval '1 hour' "
            "ORDER BY name"
        )
        return {r["name"]: r["alive_until"] for r in rows}


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _to_sqlite(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return int(value)
    return value


def _lease(r: Row) -> Lease:
    return Lease(r["channel"], r["holder"], r["token"], r["expires_at"])


def _snapshot(row: Row) -> Snapshot:
    return Snapshot(
        incident=Incident.from_json(json.loads(row["data"])),
        revision=row["revision"],
        first_seen_at=row["first_seen_at"],
        changed_at=row["changed_at"],
        previous_status=row["previous_status"],
    )


def _thread(r: Row) -> ThreadState:
    return thread_from_row(r, _as_is)


def _post(r: Row) -> OutboxPost:
    return post_from_row(r, _as_is)


def _as_is(value: Any) -> datetime | None:
    at: datetime | None = value  # psycopg returns aware datetimes
    return at
