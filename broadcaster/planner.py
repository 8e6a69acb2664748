"""Deciding what to post and when. Pure: state, history, config and ``now`` in; decisions out.

The rules, in the words of the people on the other side of the outage:
- say something as soon as an incident appears (``opened``, or ``scheduled`` for maintenance);
- say it again, in the same thread, whenever something real changes (``update``);
- never go silent past the promised time: every non-final post promises the next one, and a
  ``reminder`` keeps that promise when nothing changed;
- close the thread (``resolved`` / ``completed``).
Several changes between two plans produce one post about the newest state, because the
planner only ever looks at the newest snapshot, and the newest post supersedes the unsent
ones it makes pointless (``supersedes``). A post that waited past its own promise (a pause,
a spent budget) is planned again with a fresh one (``replan_stale``). The store records
these decisions exactly as they are made.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from .config import CadenceConfig, ChannelConfig
from .model import (
    IncidentKind,
    OutboxPost,
    PlannedPost,
    PostKind,
    PostState,
    Snapshot,
    ThreadState,
    ThreadTiming,
)

# Parts recorded and not yet confirmed: they go before anything planned now.
UNSENT = (PostState.PENDING, PostState.SENDING)

# A promise closer than this to the post that makes it would read as noise.
MIN_PROMISE = timedelta(seconds=1)

# The parts another thread's promised post is assumed to take at least, when keeping room
# for it: a reminder restates status, scope, cause and ops' latest word, so on X it often takes two
# parts even when the opening it follows took one.
NEXT_PARTS = 2


ThreadTail = Sequence[OutboxPost]
"""What the outbox holds of one thread that a new post can change: every unsent part
(pending or sending) and the latest sent part, in planned order (``DataStore.thread_tail``)."""


def _no_tail(incident_id: str, channel: str) -> ThreadTail:
    return ()


@dataclass(frozen=True)
class Budget:
    """A channel's own posting budget (``max_posts``, ``min_interval``), kept below the
    platform's so a normal run never sees a 429. Every published part counts: each is a
    request to the platform. Delivery waits for it; promises are made within it."""

    max_posts: int | None = None
    window: timedelta | None = None
    min_interval: timedelta | None = None

    @classmethod
    def of(cls, channel: ChannelConfig) -> Budget:
        posts, window = channel.max_posts or (None, None)
        return cls(max_posts=posts, window=window, min_interval=channel.min_interval)

    def next_slot(self, sent: Sequence[datetime], now: datetime, room: int = 1) -> datetime | None:
        """When ``room`` more parts may go, given send times (oldest first); None = now."""
        earliest: datetime | None = None
        if self.min_interval is not None and sent:
            earliest = sent[-1] + self.min_interval
        if self.max_posts is not None and self.window is not None:
            recent = [t for t in sent if t > now - self.window]
            excess = len(recent) - (self.max_posts - min(room, self.max_posts))
            if excess > 0:
                slot = recent[excess - 1] + self.window
                earliest = slot if earliest is None else max(earliest, slot)
        return earliest if earliest is not None and earliest > now else None

    @property
    def horizon(self) -> timedelta:
        return max(self.window or timedelta(0), self.min_interval or timedelta(0))

    @property
    def pace(self) -> timedelta:
        """The time per part at which the budget lasts its whole window (e.g. 17 a day:
        one part every 85 minutes). Promises go no faster, so that a burst of reminders
        early on does not leave the rest of the outage, and its resolution, without posts."""
        if self.max_posts is None or self.window is None:
            return timedelta(0)
        return self.window / self.max_posts


@dataclass(frozen=True)
class Load:
    """What a channel's budget already carries when a post is planned on it."""

    sent: Sequence[datetime] = ()  # parts sent within the budget's horizon, oldest first
    queued: int = 0  # parts waiting to go before the new post (pending or sending)
    reserved: Sequence[datetime] = ()  # promises the channel's other open threads made
    following: int = 0  # parts planned after the new post at the same time: they go first


def within_budget(
    promised: datetime, budget: Budget, load: Load, parts: int, now: datetime
) -> datetime:
    """The promise, moved later if the channel's budget could not keep it.

    The post being planned (``parts`` parts) goes after everything queued, each part at
    its earliest slot, and so do the posts planned after it in the same run; the next post
    (assumed as long) must then find room at the promised time for every one of its parts,
    without making late an update another thread already promised (assumed as long, and at
    least ``NEXT_PARTS``). Reminders go no faster
    than the budget's pace (``Budget.pace``). A moved promise falls on a whole minute
    ("by 10:31" kept, never "by 10:30" broken).
    """
    if not budget.horizon:
        return promised
    times = sorted(load.sent)
    at = now
    for _ in range(load.queued + parts + load.following):
        at = budget.next_slot(times, at) or at
        times.append(at)
    if budget.min_interval is not None and times:
        at = max(at, times[-1] + budget.min_interval)
    reserved = [(max(r, now), max(parts, NEXT_PARTS)) for r in load.reserved]
    already_late = _late(budget, times, reserved, None)
    candidate = max(promised, at, now + budget.pace * parts)
    if candidate != promised:
        candidate = _whole_minute(candidate)
    for _ in range(10_000):  # each step moves the candidate later; budgets are finite
        late = _late(budget, times, reserved, (candidate, parts))
        moved = max((t for i, t in late.items() if i not in already_late), default=None)
        if moved is None:
            break
        candidate = _whole_minute(max(moved, candidate + timedelta(microseconds=1)))
    return candidate


def _whole_minute(at: datetime) -> datetime:
    whole = at.replace(second=0, microsecond=0)
    return whole if whole == at else whole + timedelta(minutes=1)


def _late(
    budget: Budget,
    sent: Sequence[datetime],
    reserved: Sequence[tuple[datetime, int]],
    new: tuple[datetime, int] | None,
) -> dict[int, datetime]:
    """The promised posts that would come late, sending everything in time order at its
    earliest slot: by index in ``reserved`` (``-1`` for ``new``), the time the new post
    should move to so that this one is on time (after it, or at its own first slot)."""
    events = [(at, 0, i, n) for i, (at, n) in enumerate(reserved)]
    if new is not None:
        events.append((new[0], 1, -1, new[1]))
    times = list(sent)
    late: dict[int, datetime] = {}
    for at, _, index, count in sorted(events):
        # The new post needs room for all its parts at its time, not only for the first.
        room = budget.next_slot(times, at, room=count) if index == -1 else None
        t = at
        first: datetime | None = None
        for _ in range(count):
            t = budget.next_slot(times, t) or t
            times.append(t)
            first = first or t
        when = max(first or at, room or at)
        if when > at:
            late[index] = when if index == -1 else t
    return late


def keep_within_budget(
    decision: Decision, budget: Budget, load: Load, parts: int, now: datetime
) -> Decision:
    """``decision`` with a promise its channel's budget can keep (see ``within_budget``)."""
    promised = decision.post.next_update_at
    if promised is None:
        return decision
    kept = within_budget(promised, budget, load, parts, now)
    if kept == promised:
        return decision
    return replace(
        decision,
        post=replace(decision.post, next_update_at=kept),
        thread=replace(decision.thread, promised_at=kept),
    )


@dataclass(frozen=True)
class Decision:
    """One post to record now, and everything it changes in its thread."""

    post: PlannedPost
    thread: ThreadState  # the thread's state once this post is recorded
    supersedes: tuple[str, ...] = ()  # keys of the unsent parts this post replaces
    reply_to: str | None = None  # the part its first part replies to (its thread parent)


@dataclass(frozen=True)
class Plan:
    decisions: list[Decision]
    wake_at: datetime | None  # when the planner must run again if nothing else happens


def promise(
    snapshot: Snapshot, cadence: CadenceConfig, now: datetime, since: datetime | None = None
) -> datetime | None:
    """When the next update will come, for a non-final post made at ``now``.

    ``since``: when the thread was last reopened after its closing post. A reopened
    incident starts the cadence of its new status again, not the slow long-incident one.
    None for a maintenance whose window passed before anyone started it: its post says so
    and that a new date will follow, then the thread waits for ops (``window_passed``).
    """
    incident = snapshot.incident
    if window_passed(snapshot, now):
        return None
    if incident.next_update_at is not None and incident.next_update_at > now + MIN_PROMISE:
        longest = cadence.longest_silence(incident.status, incident.severity)
        if longest is None or incident.kind is IncidentKind.MAINTENANCE:
            return incident.next_update_at
        return min(incident.next_update_at, _on_the_minute(now + longest, longest))
    if incident.kind is IncidentKind.MAINTENANCE:
        assert incident.starts_at is not None and incident.ends_at is not None
        every = _on_the_minute(now + cadence.maintenance, cadence.maintenance)
        if incident.status == "scheduled":
            remind_at = incident.starts_at - cadence.maintenance_reminder_before
            for milestone in (remind_at, incident.starts_at):
                if milestone > now + MIN_PROMISE:
                    return milestone
            # Due and not started: say so at the maintenance cadence, and once more when
            # the window ends (then nothing until ops start, move or cancel it).
            return min(every, incident.ends_at)
        if incident.status == "in_progress" and incident.ends_at > now + MIN_PROMISE:
            return incident.ends_at
        return every
    started = incident.started_at if since is None else max(incident.started_at, since)
    interval = cadence.interval(incident.status, incident.severity, now - started)
    return _on_the_minute(now + interval, interval)


def window_passed(snapshot: Snapshot, now: datetime) -> bool:
    """A maintenance still ``scheduled`` once its window has ended: nobody started it.

    Its last post says the window passed and a new date will follow; no reminder after
    that until ops change it (start, move or cancel it). ``/metrics`` flags it for ops.
    """
    incident = snapshot.incident
    return (
        incident.kind is IncidentKind.MAINTENANCE
        and incident.status == "scheduled"
        and incident.ends_at is not None
        and now >= incident.ends_at
    )


def not_started(snapshot: Snapshot, now: datetime) -> bool:
    """A maintenance still ``scheduled`` after its start time (ops did not start it)."""
    incident = snapshot.incident
    return (
        incident.kind is IncidentKind.MAINTENANCE
        and incident.status == "scheduled"
        and incident.starts_at is not None
        and now >= incident.starts_at
    )


def _on_the_minute(at: datetime, interval: timedelta) -> datetime:
    """Promise whole minutes: posts say "by 10:30", so be there at 10:30:00, not 10:30:27.

    Rounding down keeps the promise early rather than late. Sub-minute cadences (tests,
    drills) keep their exact time.
    """
    if interval >= timedelta(minutes=2):
        return at.replace(second=0, microsecond=0)
    return at


def due_at(
    thread: ThreadState, snapshot: Snapshot, budget: Budget | None = None
) -> datetime | None:
    """When this thread needs a reminder: the promise made, or earlier if ops asked and
    the channel's budget allows it (no faster than its pace: see ``within_budget``)."""
    if thread.closed or thread.promised_at is None:
        return None
    pace = budget.pace if budget else timedelta(0)
    return _due(thread.promised_at, thread.last_planned_at, snapshot.incident.next_update_at, pace)


def _due(
    promised: datetime, last_planned: datetime, wanted: datetime | None, pace: timedelta
) -> datetime:
    if wanted is not None and last_planned + pace <= wanted and last_planned < wanted:
        return min(wanted, promised)
    return promised


def timing_due_at(timing: ThreadTiming, pace: timedelta = timedelta(0)) -> datetime | None:
    """``due_at`` from a thread's timing: when it needs a reminder, None once closed."""
    if timing.closed or timing.promised_at is None or timing.last_planned_at is None:
        return None
    return _due(timing.promised_at, timing.last_planned_at, timing.asked_at, pace)


@dataclass(frozen=True)
class Due:
    """Which active incidents may need a post now, and when each of the others will."""

    now: frozenset[str]
    later: Mapping[str, datetime]  # incident id → its earliest due time, for the others


def due(
    timings: Iterable[ThreadTiming], channels: Mapping[str, ChannelConfig], now: datetime
) -> Due:
    """The incidents ``plan`` must see at ``now``: a superset of those it would post about
    (so planning only these records exactly what planning everything would), from each
    thread's timing alone. ``later`` keeps the next wake time right over every incident.

    Due: a change not yet posted about (a revision newer than the thread's), a promise or
    an asked-for update come (``due_at``: reminders, maintenance milestones), an incident
    without any thread (planned when it appears; an incident that matches no channel
    stays here). An incident that changed (``apply_incidents``) is planned by its caller.
    """
    paces = {name: Budget.of(channel).pace for name, channel in channels.items()}
    ready: set[str] = set()
    later: dict[str, datetime] = {}
    for t in timings:
        if t.channel is None:
            if not t.final:
                ready.add(t.incident_id)
            continue
        pace = paces.get(t.channel)
        if pace is None:
            continue  # a channel no longer configured: the planner ignores its threads
        if t.revision > t.last_revision:
            if not (t.closed and t.final):
                ready.add(t.incident_id)
            continue
        at = timing_due_at(t, pace)
        if at is None:
            continue
        if at <= now:
            ready.add(t.incident_id)
        elif t.incident_id not in later or at < later[t.incident_id]:
            later[t.incident_id] = at
    for incident_id in ready:
        later.pop(incident_id, None)
    return Due(frozenset(ready), later)


def choose_kind(
    snapshot: Snapshot, thread: ThreadState | None, now: datetime, budget: Budget | None = None
) -> PostKind | None:
    """The kind of post this thread needs now, or None."""
    incident = snapshot.incident
    maintenance = incident.kind is IncidentKind.MAINTENANCE
    if thread is None:
        if incident.is_final or window_passed(snapshot, now):
            return None  # never announced, already over: nothing useful to say now
        if maintenance:
            return PostKind.STARTED if incident.status == "in_progress" else PostKind.SCHEDULED
        return PostKind.OPENED
    if thread.closed:
        if incident.is_final or snapshot.revision <= thread.last_revision:
            return None
        return (
            PostKind.STARTED
            if maintenance and incident.status == "in_progress"
            else PostKind.UPDATE
        )
    if snapshot.revision > thread.last_revision:
        if incident.is_final:
            return PostKind.COMPLETED if maintenance else PostKind.RESOLVED
        if maintenance and incident.status == "in_progress" and thread.last_status != "in_progress":
            return PostKind.STARTED
        return PostKind.UPDATE
    due = due_at(thread, snapshot, budget)
    if due is not None and now >= due:
        return PostKind.REMINDER
    return None


def plan(
    snapshots: list[Snapshot],
    threads: Mapping[tuple[str, str], ThreadState],
    channels: Mapping[str, ChannelConfig],
    cadence: CadenceConfig,
    now: datetime,
    tail_of: Callable[[str, str], ThreadTail] = _no_tail,
) -> Plan:
    """Every post due at ``now``, and when to plan again if nothing changes.

    ``tail_of(incident_id, channel)`` gives a thread's unsent posts (see ``ThreadTail``):
    what each new post supersedes and replies to is decided from them. Asked only for the
    threads that get a post, as most threads get none in a given run.
    """
    decisions: list[Decision] = []
    wake_at: datetime | None = None
    for snapshot in snapshots:
        incident = snapshot.incident
        for name, channel in channels.items():
            thread = threads.get((incident.id, name))
            if thread is None and not channel.matches(
                incident.severity, incident.services, incident.regions
            ):
                continue
            budget = Budget.of(channel)
            kind = choose_kind(snapshot, thread, now, budget)
            if kind is None:
                due = due_at(thread, snapshot, budget) if thread else None
                if due is not None and (wake_at is None or due < wake_at):
                    wake_at = due
                continue
            reopened = thread is not None and thread.closed and not kind.is_final
            since = now if reopened else thread.reopened_at if thread else None
            next_update = None if kind.is_final else promise(snapshot, cadence, now, since)
            sequence = (thread.post_count if thread else 0) + 1
            post = PlannedPost(
                incident_id=incident.id,
                channel=name,
                kind=kind,
                revision=snapshot.revision,
                sequence=sequence,
                planned_at=now,
                next_update_at=next_update,
            )
            new_thread = ThreadState(
                incident_id=incident.id,
                channel=name,
                last_revision=snapshot.revision,
                last_kind=kind,
                last_status=incident.status,
                last_planned_at=now,
                promised_at=next_update,
                post_count=sequence,
                closed=kind.is_final,
                last_post_key=post.key(),
                reminder_count=(thread.reminder_count if thread else 0)
                + (1 if kind is PostKind.REMINDER else 0),
                reopened_at=since,
            )
            decisions.append(_chained(post, new_thread, tail_of(incident.id, name)))
            if next_update is not None and (wake_at is None or next_update < wake_at):
                wake_at = next_update
    return Plan(decisions, wake_at)


def may_supersede(new: PostKind, old: PostKind) -> bool:
    """Whether a new ``new`` post replaces an unsent ``old`` post of the same thread.

    Readers get one post about the newest state, not a backlog. Openings and closings are
    never dropped (``PostKind.is_droppable``); a reminder replaces only reminders, as an
    unsent update carries news that a reminder may not repeat.
    """
    return old.is_droppable and (new is not PostKind.REMINDER or old is PostKind.REMINDER)


def supersedes(kind: PostKind, tail: ThreadTail) -> tuple[str, ...]:
    """Keys of the unsent parts a new ``kind`` post replaces in this thread.

    Whole posts only, every part pending: readers must never see a "(1/2)" whose "(2/2)"
    was dropped, and a part already handed to the platform may be out there.
    """
    posts: dict[int, list[OutboxPost]] = {}
    for part in tail:
        posts.setdefault(part.sequence, []).append(part)
    keys: list[str] = []
    for parts in posts.values():
        first = parts[0]
        whole = {p.part for p in parts} == set(range(1, first.parts + 1))
        untried = all(p.state is PostState.PENDING for p in parts)
        if whole and untried and may_supersede(kind, first.kind):
            keys += [p.key for p in parts]
    return tuple(keys)


def thread_parent(tail: ThreadTail, superseded: Collection[str]) -> str | None:
    """The part a new post replies to: the thread's latest part neither superseded nor
    failed (sent, or still to be sent before it), or None for a thread's first post."""
    for part in reversed(tail):
        if part.key not in superseded and part.state not in (
            PostState.SUPERSEDED,
            PostState.FAILED,
        ):
            return part.key
    return None


def reply_target(
    planned_parent: OutboxPost | None, latest_sent_before: OutboxPost | None
) -> OutboxPost | None:
    """What a part replies to when it goes out: the parent the planner chose for it
    (``Decision.reply_to``, recorded as its ``reply_to_key``), once that one is sent.

    If the chosen parent failed or was superseded, the latest part of the thread that went
    out before this one (None: the part starts the thread). If a later part went out after
    the chosen parent (one this post was meant to supersede but that was already on its
    way to the platform), it is replied to instead, so the thread stays one chain.
    """
    if planned_parent is None or planned_parent.state is not PostState.SENT:
        return latest_sent_before
    if latest_sent_before is not None and (
        latest_sent_before.sequence,
        latest_sent_before.part,
    ) > (planned_parent.sequence, planned_parent.part):
        return latest_sent_before
    return planned_parent


def _chained(
    post: PlannedPost, thread: ThreadState, tail: ThreadTail, replaces: Sequence[str] = ()
) -> Decision:
    """The decision to record ``post``, with what it supersedes and replies to."""
    superseded = tuple(dict.fromkeys((*supersedes(post.kind, tail), *replaces)))
    return Decision(post, thread, superseded, thread_parent(tail, superseded))


def replan_stale(
    stale: Sequence[OutboxPost],
    snapshot: Snapshot | None,
    thread: ThreadState | None,
    tail: ThreadTail,
    channels: Mapping[str, ChannelConfig],
    cadence: CadenceConfig,
    now: datetime,
) -> Decision | None:
    """Plan again an unsent post (``stale``: its parts) whose promise passed while it waited.

    Publishing "next update by 10:30" at 10:45 would break the promise in the very post
    that makes it. Same kind, newest state, fresh promise: an opening stays an opening, an
    update keeps its news. None when something else takes care of it: a newer post already
    replaced it, the change it would remind of gets its own update, or the closing post
    will supersede it.
    """
    first = stale[0]
    pending = {p.key for p in tail if p.state is PostState.PENDING}
    if any(p.key not in pending for p in stale):
        return None  # already replaced, or handed to the platform, since it was found stale
    if snapshot is None or thread is None or first.channel not in channels:
        return None
    if first.kind is PostKind.REMINDER and snapshot.revision > thread.last_revision:
        return None  # the planner's update about the change replaces it
    if snapshot.incident.is_final and not first.kind.is_final:
        return None  # the closing post is planned next and supersedes it
    sequence = thread.post_count + 1
    post = PlannedPost(
        incident_id=first.incident_id,
        channel=first.channel,
        kind=first.kind,
        revision=snapshot.revision,
        sequence=sequence,
        planned_at=now,
        next_update_at=promise(snapshot, cadence, now, thread.reopened_at),
    )
    new_thread = replace(
        thread,
        last_revision=snapshot.revision,
        last_status=snapshot.incident.status,
        last_planned_at=now,
        promised_at=post.next_update_at,
        post_count=sequence,
        last_post_key=post.key(),
    )
    return _chained(post, new_thread, tail, [p.key for p in stale])


def apply(
    threads: Mapping[tuple[str, str], ThreadState], decisions: list[Decision]
) -> dict[tuple[str, str], ThreadState]:
    """The threads once ``decisions`` are recorded (for simulations that keep state in memory)."""
    result = dict(threads)
    for d in decisions:
        result[(d.thread.incident_id, d.thread.channel)] = replace(d.thread)
    return result
