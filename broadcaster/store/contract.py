"""What any store backend promises: the contract the daemon, the CLI and the tests rely on.

A backend records ops' incidents with their revisions, the outbox (every planned post with
its exact text and idempotency key, recorded before anyone tries to deliver it), each
thread's state, each channel's state, and which source last said what. It decides nothing:
the planner decides (what to post, what it supersedes, which post it replies to) and the
store writes exactly that. ``tests/store_contract.py`` is the suite every backend passes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..model import (
    Incident,
    OutboxPost,
    PlannedPost,
    PostState,
    Snapshot,
    ThreadState,
    ThreadTiming,
)
from ..problems import Problem, ProblemsError

PostPart = tuple[str, int, int]
"""One part of a post as recorded: (exact text, counted length, the channel's limit)."""

ThreadKey = tuple[str, str]
"""(incident id, channel name): one thread."""


@dataclass(frozen=True)
class ChannelState:
    """What the daemon learnt about one channel, kept across restarts."""

    channel: str
    healthy: bool = True
    paused_until: datetime | None = None  # the platform's reset time: no post before it
    last_error: str | None = None
    replies_refused: bool = False  # the platform refuses our replies: post standalone
    max_characters: int | None = None  # the limit the server announced


@dataclass(frozen=True)
class ChannelChange:
    """A change to one channel's state: fields left at None stay as they are.

    ``recovered`` says a post went through: the channel is healthy again, its pause is lifted
    and its last error forgotten.
    """

    healthy: bool | None = None
    paused_until: datetime | None = None
    last_error: str | None = None
    replies_refused: bool | None = None
    max_characters: int | None = None
    recovered: bool = False

    def __post_init__(self) -> None:
        if self.recovered and (
            self.healthy is False or self.paused_until is not None or self.last_error is not None
        ):
            raise ValueError("a recovered channel has no pause, no error and is healthy")


@dataclass(frozen=True)
class StoreProblem(Problem):
    """The store cannot be used as it is (e.g. its schema is newer than this code)."""

    path: str  # the database file, or the URL without its password
    line: int | None
    message: str


class StoreError(ProblemsError[StoreProblem]):
    """The store refuses to open; one line says why."""


@dataclass(frozen=True)
class Lease:
    """The right to deliver one channel's posts, until ``expires_at`` (the store's clock).

    ``token`` (the fencing token) grows at each takeover: a mark made with an older token
    is refused, so a holder paused or cut off past its lease can change nothing.
    """

    channel: str
    holder: str
    token: int
    expires_at: datetime


class StoreUnavailable(Exception):
    """The store cannot be reached now (a database down or cut off). Nothing was written;
    retry later. Intake answers 503 meanwhile; delivery sends nothing it cannot record."""


class LeaseLost(Exception):
    """The lease named in a write is no longer held: another instance took the channel."""


class IncidentStore(ABC):
    """Ops' incidents, each with the revision of its last public change."""

    @abstractmethod
    def apply_incidents(
        self, incidents: Iterable[Incident], now: datetime, *, source: str | None = None
    ) -> list[str]:
        """Record ops' latest description of these incidents; return the ids that changed.

        The revision increases only when ``Incident.change_fingerprint`` changes (a change
        worth a public update, which starts a new revision record); other edits replace the
        description silently. With ``source``, an incident that source already described
        identically is skipped (see ``SourceMarks``): the newest word on an incident wins.
        """

    @abstractmethod
    def snapshots(
        self, *, active_only: bool = False, ids: Collection[str] | None = None
    ) -> list[Snapshot]:
        """Every incident, first seen first; with ``active_only``, those the planner may still
        post about: open ones, and closed ones with a thread not closed at their revision.
        With ``ids``, only those of these incidents."""

    @abstractmethod
    def snapshot(self, incident_id: str) -> Snapshot | None:
        """One incident as recorded, or None if never seen."""


class SourceMarks(ABC):
    """What each source last said about each incident (a digest, ignoring ``origin``)."""

    @abstractmethod
    def source_mark(self, source: str, incident_id: str) -> str | None:
        """The digest recorded by ``apply_incidents(..., source=source)``, or None."""


class Outbox(ABC):
    """Threads and planned posts, from recorded to sent (or failed, or superseded)."""

    @abstractmethod
    def threads(self, ids: Collection[str] | None = None) -> dict[ThreadKey, ThreadState]:
        """What each channel has already said about each incident (with ``ids``, about
        these incidents only)."""

    @abstractmethod
    def thread_timings(self, ids: Collection[str] | None = None) -> list[ThreadTiming]:
        """Every thread of every active incident (as ``snapshots(active_only=True)``; with
        ``ids``, of these incidents only, if active), with
        what of the incident decides whether it is due (``planner.due``); one timing with
        no channel for an active incident without any thread. Cheap: no incident is read
        whole, so an idle plan does not grow with the full text of everything open. In the
        order of ``snapshots``: first seen first."""

    @abstractmethod
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
        """Record one post (all its parts, pending) and the thread's new state, atomically.

        Exactly as the planner decided: the parts keyed in ``supersedes`` become superseded,
        the first part replies to ``reply_to`` and each further part to the one before it.
        Recording a key that exists raises and leaves the store unchanged.
        """

    @abstractmethod
    def thread_tail(self, incident_id: str, channel: str) -> list[OutboxPost]:
        """What a new post can change in this thread: every unsent part (pending or
        sending) and the latest sent part, in planned order."""

    @abstractmethod
    def stale_posts(self, now: datetime) -> list[list[OutboxPost]]:
        """Whole unsent posts (every part pending) whose promise is at or before ``now``,
        one list of parts per post, in planned order."""

    @abstractmethod
    def is_duplicate_text(self, channel: str, text: str) -> bool:
        """Whether this exact text already went, or is going, out on this channel."""

    @abstractmethod
    def next_to_deliver(self, channel: str) -> OutboxPost | None:
        """The channel's oldest pending or sending part: posts go out in planned order."""

    @abstractmethod
    def post(self, key: str) -> OutboxPost | None:
        """One recorded part, by its key, or None if never recorded."""

    @abstractmethod
    def latest_sent_before(self, post: OutboxPost) -> OutboxPost | None:
        """The latest sent part of the same thread planned before this one: what a post
        replies to when its recorded parent never went out (``planner.reply_target``)."""

    @abstractmethod
    def thread_root(self, incident_id: str, channel: str) -> OutboxPost | None:
        """The first sent part of a thread."""

    @abstractmethod
    def mark_sending(self, key: str, *, lease: Lease | None = None) -> bool:
        """Mark a pending or sending part as being sent (counting the attempt), durably,
        before the request leaves. False, and nothing changed, if it is no longer
        deliverable (superseded, sent or failed): it must then not be sent.

        With ``lease``, in the same transaction as the check that it is still held (with
        that fencing token, unexpired); ``LeaseLost`` and nothing changed otherwise. The
        same holds for every ``mark_*`` and ``retry_later`` below."""

    @abstractmethod
    def mark_sent(
        self,
        key: str,
        remote_id: str,
        url: str | None,
        now: datetime,
        *,
        lease: Lease | None = None,
    ) -> None:
        """The platform confirmed the part: record its id and link; clear the retry."""

    @abstractmethod
    def mark_failed(self, key: str, error: str, *, lease: Lease | None = None) -> None:
        """The platform refused the part for good."""

    @abstractmethod
    def retry_later(
        self,
        key: str,
        error: str,
        at: datetime,
        *,
        outcome_unknown: bool,
        lease: Lease | None = None,
    ) -> None:
        """Keep the part for another try at ``at``: sending if the outcome is unknown (look
        for it before re-sending), pending otherwise."""

    @abstractmethod
    def posts(
        self, *, channel: str | None = None, states: Iterable[PostState] = ()
    ) -> list[OutboxPost]:
        """Recorded parts, in planned order, optionally of one channel and some states."""

    @abstractmethod
    def sent_times(self, channel: str, since: datetime) -> list[datetime]:
        """When this channel's parts were confirmed, oldest first, from ``since`` on."""

    @abstractmethod
    def counts(self) -> dict[tuple[str, PostState], int]:
        """(channel, state) → number of parts; absent pairs count zero."""


class ChannelStates(ABC):
    """Each channel's health, pause and learnt limits."""

    @abstractmethod
    def update_channel(self, channel: str, change: ChannelChange, now: datetime) -> None:
        """Apply ``change`` to the channel's state (created on first use)."""

    @abstractmethod
    def channel_states(self) -> dict[str, ChannelState]:
        """Every channel's state ever updated; others are ``ChannelState(name)``."""

    def channel_state(self, channel: str) -> ChannelState:
        """One channel's state, or the default one if it was never updated."""
        return self.channel_states().get(channel) or ChannelState(channel)


class Leases(ABC):
    """Which instance delivers each channel, and which instances are alive.

    A store shared by several instances gives each channel to one holder at a time; a store
    only one instance can open (SQLite, flock on the data directory) gives every lease to
    whoever asks."""

    @abstractmethod
    def acquire_lease(self, channel: str, holder: str, ttl: timedelta) -> Lease | None:
        """Take the channel if it is free or its lease expired (a new fencing token), or
        renew it if ``holder`` has it; None while another holder's lease runs."""

    @abstractmethod
    def release_lease(self, lease: Lease) -> None:
        """Give the channel up at once (a clean stop), if still held exactly as ``lease``
        says: renewed since (by a reloaded worker of the same instance), it stays held."""

    @abstractmethod
    def leases(self) -> dict[str, Lease]:
        """Every channel's latest lease, expired or not."""

    @abstractmethod
    def heartbeat(self, instance: str, ttl: timedelta) -> None:
        """Say that ``instance`` is alive (for ``status``), until ``ttl`` from now."""

    @abstractmethod
    def instances(self) -> dict[str, datetime]:
        """Instances seen alive, with when their heartbeat runs out."""


class DataStore(IncidentStore, SourceMarks, Outbox, ChannelStates, Leases):
    """Everything the daemon keeps, with transactions that group writes."""

    @abstractmethod
    def batch(self) -> AbstractContextManager[None]:
        """Group writes in one transaction, all or nothing. A write that fails inside is
        undone alone (the batch goes on) unless the backend aborted the whole batch."""

    @abstractmethod
    def in_transaction(self) -> bool:
        """Whether a batch is open and still usable (False once the backend aborted it)."""

    @abstractmethod
    def copy_to_memory(self) -> DataStore:
        """An in-memory working copy of everything recorded; writes to it never reach
        this store (previews, drafts and simulations work on one)."""

    @abstractmethod
    def schema_version(self) -> int:
        """The version of the schema the store holds (migrations applied at open)."""

    def change_token(self) -> object | None:
        """A value that changes whenever another connection commits to the store (another
        process, another instance): while it stays the same, what this store object wrote
        is all that changed. None when the backend cannot tell: then nothing read from the
        store may be trusted beyond one transaction (a database shared by instances)."""
        return None

    def lost(self) -> str | None:
        """Why what this store writes no longer reaches the store others (and the next start)
        read: its file deleted or replaced under it. None while intact; a database server
        cannot be lost this way."""
        return None

    @abstractmethod
    def close(self) -> None:
        """Release the backend's resources; the store is not used afterwards."""


__all__ = [
    "ChannelChange",
    "ChannelState",
    "ChannelStates",
    "DataStore",
    "IncidentStore",
    "Lease",
    "LeaseLost",
    "Leases",
    "Outbox",
    "PostPart",
    "SourceMarks",
    "StoreError",
    "StoreProblem",
    "StoreUnavailable",
    "ThreadKey",
]
