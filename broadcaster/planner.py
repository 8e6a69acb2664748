"""Deciding what to post and when. Pure: state, history, config and ``now`` in; decisions out.

The rules, in the words of the people on the other side of the outage:
- say something as soon as an incident appears (``opened``, or ``scheduled`` for maintenance);
- say it again, in the same thread, whenever something real changes (``update``);
- never go silent past the promised time: every non-final post promises the next one, and a
  ``reminder`` keeps that promise when nothing changed;
- close the thread (``resolved`` / ``completed``).
Several changes between two plans produce one post about the newest state, because the
planner only ever looks at the newest snapshot.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from .config import CadenceConfig, ChannelConfig
from .model import IncidentKind, PlannedPost, PostKind, Snapshot, ThreadState

# A promise closer than this to the post that makes it would read as noise.
MIN_PROMISE = timedelta(seconds=1)


@dataclass(frozen=True)
class Decision:
    post: PlannedPost
    thread: ThreadState  # the thread's state once this post is recorded


@dataclass(frozen=True)
class Plan:
    decisions: list[Decision]
    wake_at: datetime | None  # when the planner must run again if nothing else happens


def promise(snapshot: Snapshot, cadence: CadenceConfig, now: datetime) -> datetime:
    """When the next update will come, for a non-final post made at ``now``."""
    incident = snapshot.incident
    if incident.next_update_at is not None and incident.next_update_at > now + MIN_PROMISE:
        return incident.next_update_at
    if incident.kind is IncidentKind.MAINTENANCE:
        assert incident.starts_at is not None and incident.ends_at is not None
        if incident.status == "scheduled":
            remind_at = incident.starts_at - cadence.maintenance_reminder_before
            for milestone in (remind_at, incident.starts_at):
                if milestone > now + MIN_PROMISE:
                    return milestone
        elif incident.status == "in_progress" and incident.ends_at > now + MIN_PROMISE:
            return incident.ends_at
        return _on_the_minute(now + cadence.maintenance, cadence.maintenance)
    interval = cadence.interval(incident.status, incident.severity, now - incident.started_at)
    return _on_the_minute(now + interval, interval)


def _on_the_minute(at: datetime, interval: timedelta) -> datetime:
    """Promise whole minutes: posts say "by 10:30", so be there at 10:30:00, not 10:30:27.

    Rounding down keeps the promise early rather than late. Sub-minute cadences (tests,
    drills) keep their exact time.
    """
    if interval >= timedelta(minutes=2):
        return at.replace(second=0, microsecond=0)
    return at


def due_at(thread: ThreadState, snapshot: Snapshot) -> datetime | None:
    """When this thread needs a reminder: the promise made, or earlier if ops asked."""
    if thread.closed or thread.promised_at is None:
        return None
    wanted = snapshot.incident.next_update_at
    if wanted is not None and thread.last_planned_at < wanted < thread.promised_at:
        return wanted
    return thread.promised_at


def choose_kind(snapshot: Snapshot, thread: ThreadState | None, now: datetime) -> PostKind | None:
    """The kind of post this thread needs now, or None."""
    incident = snapshot.incident
    maintenance = incident.kind is IncidentKind.MAINTENANCE
    if thread is None:
        if incident.is_final:
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
    due = due_at(thread, snapshot)
    if due is not None and now >= due:
        return PostKind.REMINDER
    return None


def plan(
    snapshots: list[Snapshot],
    threads: Mapping[tuple[str, str], ThreadState],
    channels: Mapping[str, ChannelConfig],
    cadence: CadenceConfig,
    now: datetime,
) -> Plan:
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
            kind = choose_kind(snapshot, thread, now)
            if kind is None:
                due = due_at(thread, snapshot) if thread else None
                if due is not None and (wake_at is None or due < wake_at):
                    wake_at = due
                continue
            next_update = None if kind.is_final else promise(snapshot, cadence, now)
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
            )
            decisions.append(Decision(post, new_thread))
            if next_update is not None and (wake_at is None or next_update < wake_at):
                wake_at = next_update
    return Plan(decisions, wake_at)


def apply(threads: Mapping[tuple[str, str], ThreadState], decisions: list[Decision]) -> dict:
    """The threads once ``decisions`` are recorded (for simulations that keep state in memory)."""
    result = dict(threads)
    for d in decisions:
        result[(d.thread.incident_id, d.thread.channel)] = replace(d.thread)
    return result
