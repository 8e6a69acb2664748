"""What the store says about each channel and thread: the one read model behind
``broadcaster status``, ``/healthz`` and ``/metrics``.

Counts, what is waiting, when each thread is due and what is left of each budget are
computed here once, so the CLI and the service cannot disagree about them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .config import ChannelConfig
from .model import IncidentKind, OutboxPost, PostState, Snapshot, ThreadState
from .planner import Budget, due_at, not_started, timing_due_at
from .store import ChannelState, DataStore

WAITING = (PostState.PENDING, PostState.SENDING)


@dataclass(frozen=True)
class ThreadStatus:
    """One channel's thread about one incident."""

    thread: ThreadState
    next_due_at: datetime | None  # when it needs a post if nothing changes; None once closed
    link: str | None = None  # its first post on the platform (read only when asked for)


@dataclass(frozen=True)
class IncidentStatus:
    snapshot: Snapshot
    threads: dict[str, ThreadStatus]  # by channel


@dataclass(frozen=True)
class ChannelStatus:
    name: str
    state: ChannelState
    counts: Mapping[PostState, int]  # parts by state; absent states count zero
    oldest_waiting_at: datetime | None  # when the oldest pending or sending part was planned
    due_times: tuple[datetime, ...] = ()  # when each of its open threads is due
    budget_left: int | None = None  # posts it may still send in its window (``max_posts``)

    def count(self, *states: PostState) -> int:
        return sum(self.counts.get(state, 0) for state in states)

    @property
    def never_delivered(self) -> bool:
        """It has tried and failed, and never got a single post through."""
        return self.count(PostState.SENT) == 0 and (
            self.count(PostState.FAILED) > 0 or self.state.last_error is not None
        )

    @property
    def waiting(self) -> int:
        """Parts recorded and not yet confirmed (pending or sending)."""
        return self.count(*WAITING)

    def overdue(self, now: datetime, grace: timedelta) -> int:
        """Threads whose promised update is more than ``grace`` late."""
        return sum(1 for due in self.due_times if now - due > grace)


@dataclass(frozen=True)
class Status:
    channels: dict[str, ChannelStatus]  # configured ones first, in config order
    incidents: list[IncidentStatus]  # first seen first
    # Parts not delivered, in planned order: waiting ones, and failed ones if detailed.
    undelivered: list[OutboxPost] = field(default_factory=list)
    # Maintenances still "scheduled" after their start: ops forgot to start or move them.
    not_started: tuple[str, ...] = ()


def read_status(
    store: DataStore,
    channels: Mapping[str, ChannelConfig],
    now: datetime,
    *,
    detailed: bool = False,
    incidents: bool = True,
) -> Status:
    """The store's state at ``now``. ``detailed`` adds what people read but probes need not:
    each thread's link and the failed parts (one more read per thread). ``incidents``
    False leaves ``Status.incidents`` empty, and reads no incident whole (``/healthz``,
    ``/metrics``: their cost must not grow with the text of everything open)."""
    counts = store.counts()
    states = store.channel_states()
    undelivered = store.posts(states=(*WAITING, PostState.FAILED) if detailed else WAITING)
    budgets = {
        name: _budget_left(c, store.sent_times(name, now - c.max_posts[1]))
        for name, c in channels.items()
        if c.max_posts is not None
    }
    due_times: dict[str, list[datetime]] = {}
    if incidents:
        snapshots = store.snapshots()
        by_id = {s.incident.id: IncidentStatus(s, {}) for s in snapshots}
        for (incident_id, channel), thread in store.threads().items():
            status = by_id.get(incident_id)
            budget = Budget.of(channels[channel]) if channel in channels else None
            due = due_at(thread, status.snapshot, budget) if status is not None else None
            if due is not None:
                due_times.setdefault(channel, []).append(due)
            if status is not None:
                root = store.thread_root(incident_id, channel) if detailed else None
                status.threads[channel] = ThreadStatus(
                    thread, due, root.remote_url if root else None
                )
        not_yet = tuple(s.incident.id for s in snapshots if not_started(s, now))
    else:
        # Every open thread belongs to an active incident: the timings have them all.
        timings = store.thread_timings()
        paces = {name: Budget.of(c).pace for name, c in channels.items()}
        for timing in timings:
            if timing.channel is not None:
                due = timing_due_at(timing, paces.get(timing.channel, timedelta(0)))
                if due is not None:
                    due_times.setdefault(timing.channel, []).append(due)
        by_id, not_yet = (
            {},
            tuple(
                dict.fromkeys(
                    t.incident_id
                    for t in timings
                    if t.kind == IncidentKind.MAINTENANCE.value
                    and t.status == "scheduled"
                    and t.starts_at is not None
                    and now >= t.starts_at
                )
            ),
        )
    oldest: dict[str, datetime] = {}
    for post in undelivered:
        if post.state in WAITING:
            oldest.setdefault(post.channel, post.planned_at)
    names = list(channels) + sorted({c for c, _ in counts} - set(channels))
    return Status(
        channels={
            name: ChannelStatus(
                name=name,
                state=states.get(name) or ChannelState(name),
                counts={s: n for (c, s), n in counts.items() if c == name},
                oldest_waiting_at=oldest.get(name),
                due_times=tuple(due_times.get(name, ())),
                budget_left=budgets.get(name),
            )
            for name in names
        },
        incidents=list(by_id.values()),
        undelivered=undelivered if detailed else [],
        not_started=not_yet,
    )


def _budget_left(channel: ChannelConfig, sent: list[datetime]) -> int:
    """Posts this channel may still send in its budget window (``max_posts``)."""
    assert channel.max_posts is not None
    posts, _ = channel.max_posts
    return max(0, posts - len(sent))
