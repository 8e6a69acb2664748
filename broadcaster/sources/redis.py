"""Redis Streams: producers ``XADD <stream> * event '<json>'``; we read as a consumer group.

Redis delivers at least once; we apply each event once:

- an entry is XACKed only after the store committed its event (``Event.ack``), so a crash
  or a lost connection never loses one: it stays in the group's pending list (PEL);
- at start, after a reconnection, and whenever the daemon did not settle a delivered event,
  our own PEL is read again from id 0 before anything new. Entries this process already
  applied (an XACK that never reached Redis, or that Redis lost in a restart) are only
  XACKed then, never applied twice;
- entries left pending by another consumer (a crashed predecessor under another name) are
  taken over with XAUTOCLAIM once idle for ``claim_idle``. Until they are, we read nothing
  new: a newer event for an incident must not overtake an older one, or its status would go
  back in time, publicly;
- a bad entry (no ``event`` field, bad JSON, refused by validation) is copied to
  ``<stream>:dead`` with its ``error`` and original ``id``, in one MULTI with its XACK.

What memory cannot cover is a crash of the daemon itself after a commit and before its XACK
reached Redis. Normally that is one event, the newest applied, and applying it again at
restart is harmless: merged onto the incident it already shaped it yields the same incident,
and the store skips a source's identical description. (Only a daemon killed *during* a Redis
outage can leave several applied-but-unacked events for one incident; they would then be
re-applied in order, the final state being right.)

Redis unreachable: ``poll()`` returns None, the outage is logged once and shown in
``last_error``, and reconnection is tried on later polls with exponential backoff.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..events import EventError, decode
from .base import Batch, Event, PullSource

log = logging.getLogger("broadcaster.sources.redis")

EVENT_FIELD = b"event"
DEFAULT_BATCH_SIZE = 100
# No BLOCK by default. Redis (7.0, hz 10) times a blocked read out on its 100 ms cron tick
# whatever BLOCK says (BLOCK 1 to 50 ms measured at 100 ms, BLOCK 100 at up to 200 ms), and the
# daemon polls under its lock: every idle poll would hold back the other sources' posts and
# HTTP submissions by 100 ms. Without it, an event waits for the next poll, like the others.
DEFAULT_BLOCK: timedelta | None = None
DEFAULT_CLAIM_IDLE = timedelta(seconds=30)
DEAD_LETTER_MAXLEN = 10_000
DEFAULT_CLAIM_EVERY = timedelta(seconds=10)
DEFAULT_BACKOFF_INITIAL = timedelta(milliseconds=200)
DEFAULT_BACKOFF_MAX = timedelta(seconds=10)
# Bounds how long a poll can hang on a Redis that accepts connections but does not answer.
DEFAULT_SOCKET_TIMEOUT = timedelta(seconds=1)
# Entry ids applied by this process, remembered so that a re-read never applies one twice.
# Far more than can be delivered between an outage and the reconnection that settles them.
REMEMBERED_IDS = 65536
# While other consumers' pending entries hold new ones back, a watched source retries taking
# them over this often (seconds).
OTHERS_PENDING_RECHECK = 0.25


class RedisStreamSource(PullSource):
    name = "redis"

    def __init__(
        self,
        url: str,
        stream: str = "broadcaster:events",
        group: str = "broadcaster",
        consumer: str = "broadcaster-1",
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        block: timedelta | None = DEFAULT_BLOCK,
        claim_idle: timedelta | None = None,
        claim_every: timedelta = DEFAULT_CLAIM_EVERY,
        backoff_initial: timedelta = DEFAULT_BACKOFF_INITIAL,
        backoff_max: timedelta = DEFAULT_BACKOFF_MAX,
        socket_timeout: timedelta = DEFAULT_SOCKET_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.dead_stream = f"{stream}:dead"
        self.group = group
        self.consumer = consumer
        self.batch_size = batch_size
        # BLOCK 0 would mean "forever": the shortest real block is 1 ms.
        self.block_ms = None if block is None else max(1, int(block.total_seconds() * 1000))
        # Looked up at construction, not bound as a default: app.py does not pass it (yet), and
        # tests shorten it for the whole module.
        self.claim_idle = claim_idle if claim_idle is not None else DEFAULT_CLAIM_IDLE
        self.claim_every = claim_every.total_seconds()
        self.backoff_initial = backoff_initial.total_seconds()
        self.backoff_max = backoff_max.total_seconds()
        self.clock = clock
        timeout = socket_timeout.total_seconds() + (block.total_seconds() if block else 0)
        self._url = url
        self._socket_timeout = socket_timeout.total_seconds()
        # The blocking reads of ``wait``, on a client of their own: made on demand by watch().
        self._waiter: Any = None
        self._interrupted = threading.Event()
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=socket_timeout.total_seconds(),
            # No hidden retries: a failure must surface now, and our backoff paces the next try.
            retry=Retry(NoBackoff(), 0),
            decode_responses=False,
        )
        kwargs = self._client.connection_pool.connection_kwargs
        # For messages: never the URL, which may carry a password.
        self.where = (
            kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}/{kwargs.get('db', 0)}"
        )
        self._connected = False
        self._down_since: float | None = None
        self._retry_at = 0.0
        self._backoff = self.backoff_initial
        self._error: str | None = None
        # Where to re-read our own pending entries from; None: read new entries (">").
        self._cursor: bytes | None = b"0"
        self._next_claim = 0.0
        self._others_pending = 0
        self._handled: OrderedDict[bytes, None] = OrderedDict()
        self._delivered: list[bytes] = []
        # Entries a blocking read in wait() delivered, for the next poll to hand over.
        self._buffered: list[tuple[bytes, dict[bytes, bytes] | None]] = []

    @property
    def last_error(self) -> str | None:
        return self._error

    def close(self) -> None:
        self._client.close()
        if self._waiter is not None:
            self._waiter.close()

    # -- waiting for entries ------------------------------------------------------------------

    def watch(self) -> str | None:
        self._waiter = redis.Redis.from_url(
            self._url,
            # A blocked read lasts up to its BLOCK (at most ``claim_every``), then answers.
            socket_timeout=self.claim_every + self._socket_timeout,
            socket_connect_timeout=self._socket_timeout,
            retry=Retry(NoBackoff(), 0),
            decode_responses=False,
        )
        return None

    def wait(self, timeout: float) -> bool:
        """Block on the stream (``XREADGROUP ... BLOCK``) until an entry arrives.

        The entries it reads are in our pending list: the next ``poll`` hands them over
        first (or reads them again from id 0, in stream order, if it must re-read that list
        anyway), so nothing is applied out of order or twice, and a crash loses none.
        """
        if self._interrupted.is_set():
            return False
        # Never longer than until the next look at other consumers' pending entries.
        now = self.clock()
        timeout = min(timeout, max(0.0, self._next_claim - now) + 0.001)
        if not self._connected:
            # poll() reconnects, paced by the backoff: wait for the next try.
            return not self._interrupted.wait(min(timeout, max(0.0, self._retry_at - now)))
        if self._others_pending:
            # Reading nothing new until those are taken over (see _claim): poll() retries
            # the take-over at the polling pace.
            return not self._interrupted.wait(min(timeout, OTHERS_PENDING_RECHECK))
        try:
            reply = self._waiter.xreadgroup(
                self.group,
                self.consumer,
                {self.stream: ">"},
                count=self.batch_size,
                block=max(1, int(timeout * 1000)),
            )
        except redis.ResponseError:
            return True  # NOGROUP and the like: poll() recreates the group
        except (redis.RedisError, OSError, ValueError) as e:
            if self._interrupted.is_set():
                return False
            # Redis gone: poll() says so and reconnects, with backoff.
            log.debug("redis %s: blocking read failed: %s", self.where, e)
            return True
        entries = _entries(reply)
        if not entries:
            return not self._interrupted.is_set()  # the periodic look at pending entries
        if self._cursor is None:
            self._buffered = entries  # handed over by the next poll, first
        # else: our pending entries are to be read again from id 0, these among them.
        return True

    def interrupt(self) -> None:
        self._interrupted.set()
        if self._waiter is not None:
            # Shuts the blocked read's socket down: its recv returns at once.
            self._waiter.connection_pool.disconnect()

    # -- polling ------------------------------------------------------------------------------

    def poll(self) -> Batch | None:
        if not self._connected and not self._connect():
            return None
        try:
            events = self._read()
        except redis.ResponseError as e:
            if "NOGROUP" in str(e):
                # The group was deleted (or Redis came back empty): recreate it and start over.
                log.warning(
                    "redis %s: consumer group %s is gone; recreating it", self.where, self.group
                )
                self._connected = False
            else:
                self._fail(e)
            return None
        except redis.RedisError as e:
            self._fail(e)
            return None
        return Batch(events=events) if events else None

    def _read(self) -> list[Event]:
        if any(entry_id not in self._handled for entry_id in self._delivered):
            # The daemon dropped part of the last batch (it failed mid-way): those entries are
            # still ours and pending; read them again, in order, before anything new.
            self._cursor = b"0"
        self._delivered = []
        now = self.clock()
        if self._others_pending or now >= self._next_claim:
            self._claim(now)
        events: list[Event] = []
        buffered, self._buffered = self._buffered, []
        if buffered:
            if self._cursor is not None:
                return self._read_stream()  # re-read from id 0: they are there too
            # What wait()'s blocking read delivered: the newest entries, in stream order.
            for entry_id, fields in buffered:
                event = self._event(entry_id, fields)
                if event is not None:
                    events.append(event)
                    self._delivered.append(entry_id)
            return events
        return self._read_stream()

    def _read_stream(self) -> list[Event]:
        """Our pending entries from the cursor (if set), then new ones, one batch at most."""
        events: list[Event] = []
        examined = 0
        while examined < self.batch_size:
            wanted = self.batch_size - examined
            cursor = self._cursor
            backlog = cursor is not None
            if cursor is not None:
                reply = self._client.xreadgroup(
                    self.group, self.consumer, {self.stream: cursor}, count=wanted
                )
                entries = _entries(reply)
                # Fewer than asked: our backlog is done, new entries come next.
                self._cursor = entries[-1][0] if len(entries) == wanted else None
            else:
                if self._others_pending:
                    break
                reply = self._client.xreadgroup(
                    self.group,
                    self.consumer,
                    {self.stream: ">"},
                    count=wanted,
                    block=None if events or examined else self.block_ms,
                )
                entries = _entries(reply)
            examined += len(entries)
            for entry_id, fields in entries:
                event = self._event(entry_id, fields)
                if event is not None:
                    events.append(event)
                    self._delivered.append(entry_id)
            if self._cursor is None and len(entries) < wanted and not backlog:
                break  # the stream has nothing more for now
        return events

    def _event(self, entry_id: bytes, fields: dict[bytes, bytes] | None) -> Event | None:
        if entry_id in self._handled:
            # Applied before an XACK was lost: settle it, do not apply it twice.
            self._client.xack(self.stream, self.group, entry_id)
            return None
        origin = f"redis:{self.stream}#{entry_id.decode()}"
        if not fields:
            # Trimmed or deleted from the stream while pending: nothing left to apply.
            log.warning("%s: entry deleted from the stream before it was applied", origin)
            self._client.xack(self.stream, self.group, entry_id)
            return None
        raw = fields.get(EVENT_FIELD)
        if raw is None:
            original = json.dumps(
                {k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()}
            )
            self._dead_letter(
                entry_id,
                original.encode(),
                f"{origin}: no '{EVENT_FIELD.decode()}' field in the entry",
            )
            return None
        try:
            data = decode(raw, origin=origin)
        except EventError as e:
            self._dead_letter(entry_id, raw, str(e))
            return None
        except Exception as e:  # whatever else the entry triggers: it alone is dead-lettered
            log.exception("%s: could not be decoded", origin)
            self._dead_letter(entry_id, raw, f"{origin}: could not be decoded: {e!r}")
            return None
        return Event(
            data,
            origin,
            ack=partial(self._ack, entry_id),
            reject=partial(self._reject, entry_id, raw),
        )

    def _claim(self, now: float) -> None:
        """Take over entries other consumers left pending; note whether any remain."""
        self._next_claim = now + self.claim_every
        others = self._pending_elsewhere()
        if not others:
            self._others_pending = 0
            return
        start: bytes | str = "0-0"
        claimed = 0
        for _ in range(10):  # bounded: the rest is claimed at the next poll
            start, entries, *deleted = self._client.xautoclaim(
                self.stream,
                self.group,
                self.consumer,
                int(self.claim_idle.total_seconds() * 1000),
                start,
                count=self.batch_size,
            )
            claimed += len(entries)
            if deleted and deleted[0]:
                log.warning(
                    "redis %s: %d pending entries were deleted from %s before being applied",
                    self.where,
                    len(deleted[0]),
                    self.stream,
                )
            if start in (b"0-0", "0-0"):
                break
        if claimed:
            log.warning(
                "redis %s: took over %d pending event(s) from %s",
                self.where,
                claimed,
                ", ".join(sorted(others)),
            )
            self._cursor = b"0"  # claimed entries are now in our PEL: read them in order
            others = self._pending_elsewhere()
        waiting = sum(others.values())
        if waiting:
            message = (
                f"redis {self.where}: {waiting} event(s) pending with "
                f"{', '.join(sorted(others))}; reading no new event until they can be taken "
                f"over (idle for {self.claim_idle.total_seconds():g}s), so that events apply "
                "in stream order"
            )
            if not self._others_pending:
                log.warning("%s", message)
            self._error = message  # shown by `status`: new events wait, on purpose
        elif self._others_pending:
            self._error = None
        self._others_pending = waiting

    def _pending_elsewhere(self) -> dict[str, int]:
        summary: dict[str, Any] = self._client.xpending(self.stream, self.group)
        mine = self.consumer.encode()
        return {
            c["name"].decode(errors="replace"): int(c["pending"])
            for c in summary.get("consumers") or []
            if c["name"] != mine and int(c["pending"])
        }

    # -- settling entries ---------------------------------------------------------------------

    def _ack(self, entry_id: bytes) -> None:
        self._remember(entry_id)
        if not self._connected:
            return  # settled by the re-read that follows the reconnection
        try:
            self._client.xack(self.stream, self.group, entry_id)
        except redis.RedisError as e:
            self._fail(e)

    def _reject(self, entry_id: bytes, raw: bytes, reason: str) -> None:
        if not self._connected:
            return  # still pending: validated again and dead-lettered after reconnection
        try:
            self._dead_letter(entry_id, raw, reason)
        except redis.RedisError as e:
            self._fail(e)

    def _dead_letter(self, entry_id: bytes, raw: bytes, reason: str) -> None:
        log.error("event refused: %s", reason)
        pipe = self._client.pipeline(transaction=True)
        # Bounded: a producer stuck sending garbage must not fill Redis' memory.
        pipe.xadd(
            self.dead_stream,
            {"event": raw, "error": reason, "id": entry_id},
            maxlen=DEAD_LETTER_MAXLEN,
            approximate=True,
        )
        pipe.xack(self.stream, self.group, entry_id)
        pipe.execute()
        self._remember(entry_id)

    def _remember(self, entry_id: bytes) -> None:
        self._handled[entry_id] = None
        if len(self._handled) > REMEMBERED_IDS:
            self._handled.popitem(last=False)

    # -- the connection -----------------------------------------------------------------------

    def _connect(self) -> bool:
        now = self.clock()
        if now < self._retry_at:
            return False
        try:
            try:
                self._client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
            except redis.ResponseError as e:
                if "BUSYGROUP" not in str(e):
                    raise
        except redis.RedisError as e:
            self._fail(e)
            return False
        if self._down_since is not None:
            log.info("redis %s: reachable again after %.1fs", self.where, now - self._down_since)
        else:
            log.info(
                "redis %s: reading %s as %s/%s", self.where, self.stream, self.group, self.consumer
            )
        self._connected = True
        self._down_since = None
        self._backoff = self.backoff_initial
        self._error = None
        # Whatever we delivered before is ours and pending, or settled: look again.
        self._cursor = b"0"
        self._next_claim = now
        return True

    def _fail(self, error: Exception) -> None:
        now = self.clock()
        message = f"redis {self.where}: {error}"
        if self._down_since is None:
            log.error("%s (retrying in the background; nothing is lost meanwhile)", message)
            self._down_since = now
        else:
            log.debug("%s", message)
        self._error = message
        self._connected = False
        self._retry_at = now + self._backoff
        self._backoff = min(self._backoff * 2, self.backoff_max)


def _entries(reply: Any) -> list[tuple[bytes, dict[bytes, bytes] | None]]:
    """The entries of an XREADGROUP reply on one stream (RESP2 list or RESP3 map)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        streams = list(reply.values())
        return list(streams[0][0]) if streams and streams[0] else []
    return list(reply[0][1])
