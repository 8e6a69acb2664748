"""The planner's edge cases, as readers of the posts notice them: budgets that hold a
promise back, maintenances seen late or reopened, stale posts planned again, several
incidents in one plan. Pure, fake clock (helpers shared with test_planner.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from test_planner import CADENCE, CHANNELS, T0, Timeline, incident, maintenance, part

from broadcaster import planner
from broadcaster.config import CadenceConfig, ChannelConfig
from broadcaster.model import Localized, OutboxPost, PostKind, PostState, Snapshot, ThreadState

MIN = timedelta(minutes=1)
X_EN = {"x-en": CHANNELS["x-en"]}


def budgeted(**kw: object) -> dict[str, ChannelConfig]:
    return {"x-en": ChannelConfig(name="x-en", platform="x", language="en", **kw)}  # type: ignore[arg-type]


# -- the channel's budget ------------------------------------------------------------------


def test_a_channels_configured_budget_holds_its_posts_back() -> None:
    channel = budgeted(max_posts=(3, timedelta(hours=1)), min_interval=10 * MIN)["x-en"]
    budget = planner.Budget.of(channel)
    # three posts in the last hour: the next waits until the oldest leaves the window
    assert budget.next_slot([T0 - 55 * MIN, T0 - 50 * MIN, T0 - 45 * MIN], T0) == T0 + 5 * MIN
    # one post two minutes ago: the next waits for the minimum interval
    assert budget.next_slot([T0 - 2 * MIN], T0) == T0 + 8 * MIN
    # both at once: whichever comes later
    assert budget.next_slot([T0 - 55 * MIN, T0 - 50 * MIN, T0 - MIN], T0) == T0 + 9 * MIN


def test_a_post_may_go_the_moment_its_budget_allows_it() -> None:
    spaced = planner.Budget(min_interval=5 * MIN)
    assert spaced.next_slot([T0 - 5 * MIN], T0) is None, "its interval is over: now"
    per_hour = planner.Budget(max_posts=2, window=timedelta(hours=1))
    assert per_hour.next_slot([T0 - 30 * MIN], T0) is None, "one of two used: one more fits"
    assert per_hour.next_slot([T0 - 30 * MIN], T0, room=2) == T0 + 30 * MIN, "two do not"


def test_the_next_post_must_fit_whole_within_the_budget() -> None:
    # 3 an hour; this post's two parts go now: a 2-part post at 08:10 would have room for
    # its first part only, so the promise waits until both of these leave the window
    budget = planner.Budget(max_posts=3, window=timedelta(hours=1))
    assert planner.within_budget(T0 + 45 * MIN, budget, planner.Load(), 2, T0) == T0 + 60 * MIN
    # 2 an hour, a 3-part thread: its last part at 08:25, the next whole post by 09:25
    two = planner.Budget(max_posts=2, window=timedelta(hours=1))
    assert planner.within_budget(T0 + MIN, two, planner.Load(), 3, T0) == T0 + 2 * 60 * MIN


def test_a_sparse_budget_is_paced_even_for_a_single_part() -> None:
    budget = planner.Budget(max_posts=2, window=10 * MIN)
    assert planner.within_budget(T0, budget, planner.Load(), 1, T0) == T0 + 5 * MIN


def test_a_promise_for_the_same_minute_as_another_threads_goes_right_after_it() -> None:
    budget = planner.Budget(min_interval=MIN)
    other = planner.Load(reserved=[T0 + 5 * MIN])  # its 3 parts at 07:30, :31, :32
    assert planner.within_budget(T0 + 5 * MIN, budget, other, 3, T0) == T0 + 8 * MIN


def test_another_threads_later_promise_leaves_room_for_an_earlier_one() -> None:
    budget = planner.Budget(max_posts=5, window=10 * MIN)
    # this post's 3 parts now; at 07:30 two slots only, at 07:35 the window has room again,
    # and the other thread's promise at 07:45 is not in the way
    other = planner.Load(reserved=[T0 + 20 * MIN])
    assert planner.within_budget(T0 + 5 * MIN, budget, other, 3, T0) == T0 + 10 * MIN


def test_another_threads_promise_is_kept_when_its_first_part_goes_on_time() -> None:
    budget = planner.Budget(max_posts=5, window=timedelta(hours=1))
    # one part sent at 06:55, this post's two now; paced, the next post by 07:49; the other
    # thread's update at 07:55 still starts on time, so 07:49 stands (not 08:25)
    load = planner.Load(sent=[T0 - 30 * MIN], reserved=[T0 + 30 * MIN])
    assert planner.within_budget(T0, budget, load, 2, T0) == T0 + 24 * MIN


def test_a_promise_that_would_delay_another_threads_update_moves_after_all_its_parts() -> None:
    budget = planner.Budget(min_interval=7 * MIN)
    # this post: 07:25 and 07:32; the other thread's two parts at 07:45 and 07:52: this
    # thread's next post at 07:40 would push them to 07:54 and 08:01, so it waits until 08:01
    other = planner.Load(reserved=[T0 + 20 * MIN])
    assert planner.within_budget(T0 + 15 * MIN, budget, other, 2, T0) == T0 + 36 * MIN


def test_a_decision_keeps_a_promise_its_budget_can_keep_and_moves_one_it_cannot() -> None:
    t = Timeline(X_EN)
    t.set(incident(), T0)
    (opening,) = planner.plan(list(t.snapshots.values()), {}, X_EN, CADENCE, T0).decisions
    assert opening.post.next_update_at == T0 + 15 * MIN
    generous = planner.Budget(max_posts=300, window=timedelta(hours=3))
    assert planner.keep_within_budget(opening, generous, planner.Load(), 1, T0) == opening
    tight = planner.Budget(max_posts=17, window=timedelta(hours=24))  # a part every 85 min
    kept = planner.keep_within_budget(opening, tight, planner.Load(), 1, T0)
    # the post says the later time, and the thread waits for it: the promise is kept
    assert kept.post.next_update_at == kept.thread.promised_at == T0 + 85 * MIN
    assert (kept.post.kind, kept.post.planned_at, kept.reply_to) == (
        PostKind.OPENED,
        T0,
        opening.reply_to,
    )
    assert replace(kept.post, next_update_at=opening.post.next_update_at) == opening.post
    # a closing post promises nothing: nothing to move
    t.set(incident(status="resolved"), T0 + MIN)
    threads = planner.apply({}, [opening])
    (closing,) = planner.plan(
        list(t.snapshots.values()), threads, X_EN, CADENCE, T0 + MIN
    ).decisions
    assert planner.keep_within_budget(closing, tight, planner.Load(), 1, T0 + MIN) == closing


def test_ops_asking_for_an_update_sooner_gets_it_only_as_fast_as_the_budget_allows() -> None:
    channels = budgeted(max_posts=(3, timedelta(hours=1)))  # pace: a post every 20 minutes
    t = Timeline(channels)
    t.set(incident(severity="minor"), T0)  # promised 07:55
    t.plan(T0)
    promised = T0 + 30 * MIN
    # ops want one at 07:35: sooner than the budget's pace, the promise stands
    t.set(incident(severity="minor", next_update_at=T0 + 10 * MIN), T0 + MIN)
    assert t.plan(T0 + MIN).decisions == []  # next_update_at alone is not news
    result = t.plan(T0 + 10 * MIN)
    assert result.decisions == [] and result.wake_at == promised
    # at 07:45 (20 minutes after the last post) the budget allows it: brought forward
    t.set(incident(severity="minor", next_update_at=T0 + 20 * MIN), T0 + 11 * MIN)
    assert t.plan(T0 + 11 * MIN).wake_at == T0 + 20 * MIN
    assert t.kinds() == [PostKind.OPENED]
    assert [d.post.kind for d in t.plan(T0 + 20 * MIN).decisions] == [PostKind.REMINDER]


def test_without_a_budget_ops_next_update_time_brings_the_reminder_forward() -> None:
    # the status page of a thread whose channel was removed from the configuration
    thread = ThreadState(
        "sbg-power", "x-en", 1, PostKind.OPENED, "investigating", T0, T0 + 30 * MIN, 1, False, None
    )
    snapshot = Snapshot(incident(next_update_at=T0 + 10 * MIN), 1, T0, T0)
    assert planner.due_at(thread, snapshot) == T0 + 10 * MIN


def test_the_reminder_ops_asked_for_is_posted_once() -> None:
    t = Timeline(X_EN)
    t.set(incident(severity="minor"), T0)
    t.plan(T0)
    asked = T0 + 10 * MIN
    t.set(incident(severity="minor", next_update_at=asked), T0 + MIN)
    t.plan(T0 + MIN)
    assert [d.post.kind for d in t.plan(asked).decisions] == [PostKind.REMINDER]
    # ops leave their time in place: it has been kept, the cadence takes over again
    after = t.plan(asked + MIN)
    assert after.decisions == [] and after.wake_at == asked + 30 * MIN
    assert t.threads[("sbg-power", "x-en")].last_kind is PostKind.REMINDER  # shown by status


# -- promises ---------------------------------------------------------------------------


def test_a_time_ops_give_less_than_a_second_away_is_not_promised() -> None:
    t = Timeline(X_EN)
    t.set(incident(severity="major", next_update_at=T0 + timedelta(seconds=1)), T0)
    assert t.plan(T0).decisions[0].post.next_update_at == T0 + 15 * MIN


@pytest.mark.parametrize("milestone", ["reminder", "start", "end"])
def test_a_maintenance_milestone_a_second_away_is_not_promised(milestone: str) -> None:
    start, end = maintenance().starts_at, maintenance().ends_at
    assert start is not None and end is not None
    reminder = start - CADENCE.maintenance_reminder_before
    second = timedelta(seconds=1)
    snapshot, now, expected = {
        # announced a second before the reminder time: it promises the start instead
        "reminder": (Snapshot(maintenance(), 1, T0, T0), reminder - second, start),
        # reminded a second before the start: the next post at the maintenance cadence
        "start": (Snapshot(maintenance(), 1, T0, T0), start - second, start + 29 * MIN),
        # in progress, a second before its end: the next post at the maintenance cadence
        "end": (
            Snapshot(maintenance(status="in_progress"), 1, T0, T0),
            end - second,
            end + 29 * MIN,
        ),
    }[milestone]
    assert planner.promise(snapshot, CADENCE, now) == expected


def test_promises_on_a_two_minute_cadence_fall_on_the_minute() -> None:
    drill = CadenceConfig(every={"investigating": {"critical": 2 * MIN, "minor": MIN}})
    now = T0 + timedelta(seconds=17, microseconds=500)
    assert planner.promise(Snapshot(incident(), 1, now, now), drill, now) == T0 + 2 * MIN
    # sub-2-minute drills keep the exact time
    minor = Snapshot(incident(severity="minor"), 1, now, now)
    assert planner.promise(minor, drill, now) == now + MIN


def test_a_maintenance_whose_window_passed_waits_for_ops_even_with_a_next_update_time() -> None:
    t = Timeline(X_EN)
    end = maintenance().ends_at
    assert end is not None
    t.set(maintenance(), T0)
    t.run_until(end, T0)
    assert t.posted[-1][0] == end and t.posted[-1][3] is None
    t.set(maintenance(next_update_at=end + timedelta(hours=2)), end + MIN)
    later = t.plan(end + timedelta(hours=3))
    assert later.decisions == [] and later.wake_at is None


# -- maintenances ------------------------------------------------------------------------


def test_a_maintenance_first_seen_in_progress_is_announced_as_started() -> None:
    t = Timeline(X_EN)
    start = maintenance().starts_at
    assert start is not None
    t.set(maintenance(status="in_progress"), start)
    assert t.plan(start).decisions[0].post.kind is PostKind.STARTED


def test_an_edit_during_a_maintenance_posts_an_update_not_a_second_start() -> None:
    t = Timeline(X_EN)
    start = maintenance().starts_at
    assert start is not None
    t.set(maintenance(), T0)
    t.plan(T0)
    t.set(maintenance(status="in_progress"), start)
    t.plan(start)
    t.set(
        maintenance(status="in_progress", message=Localized.of("Half the racks done")),
        start + 30 * MIN,
    )
    t.plan(start + 30 * MIN)
    assert t.kinds() == [PostKind.SCHEDULED, PostKind.STARTED, PostKind.UPDATE]


@pytest.mark.parametrize(
    "status,kind", [("in_progress", PostKind.STARTED), ("scheduled", PostKind.UPDATE)]
)
def test_a_maintenance_completed_by_mistake_speaks_again_in_its_thread(
    status: str, kind: PostKind
) -> None:
    t = Timeline(X_EN)
    start = maintenance().starts_at
    assert start is not None
    t.set(maintenance(status="in_progress"), start)
    t.plan(start)
    t.set(maintenance(status="completed"), start + 10 * MIN)
    t.plan(start + 10 * MIN)
    t.set(maintenance(status=status), start + 20 * MIN)
    (again,) = t.plan(start + 20 * MIN).decisions
    assert (again.post.kind, again.post.sequence) == (kind, 3)


def test_a_maintenance_nobody_started_is_flagged_from_its_start_time() -> None:
    start = maintenance().starts_at
    assert start is not None
    scheduled = Snapshot(maintenance(), 1, T0, T0)
    assert not planner.not_started(scheduled, start - timedelta(seconds=1))
    assert planner.not_started(scheduled, start)
    assert planner.not_started(scheduled, start + timedelta(hours=5))
    started = Snapshot(maintenance(status="in_progress"), 2, T0, start)
    assert not planner.not_started(started, start + MIN)
    an_incident = Snapshot(incident(status="identified"), 1, T0, T0)
    assert not planner.not_started(an_incident, start + MIN)


# -- several channels, several incidents ---------------------------------------------------


def test_a_channel_filter_keeps_an_incident_off_that_channel_only() -> None:
    channels = {
        "x-critical": ChannelConfig(
            name="x-critical", platform="x", language="en", severities=("critical",)
        ),
        **CHANNELS,
    }
    t = Timeline(channels)
    t.set(incident(severity="minor"), T0)
    result = t.plan(T0)
    assert sorted(d.post.channel for d in result.decisions) == ["mastodon-fr", "x-en"]
    assert all(d.post.planned_at == T0 for d in result.decisions)


def test_a_channel_added_during_an_incident_opens_its_thread_at_once() -> None:
    t = Timeline(X_EN)
    t.set(incident(), T0)
    t.plan(T0)
    t.channels = CHANNELS
    result = t.plan(T0 + 5 * MIN)
    assert [(d.post.channel, d.post.kind) for d in result.decisions] == [
        ("mastodon-fr", PostKind.OPENED)
    ]
    assert result.wake_at == T0 + 15 * MIN, "x-en's promise is still the first"


def test_each_incident_in_one_plan_replies_in_its_own_thread() -> None:
    t = Timeline(X_EN)
    t.set(incident(), T0)
    t.set(incident(id="rbx-dns", regions=("RBX",)), T0)
    t.plan(T0)
    t.set(incident(status="identified"), T0 + MIN)
    t.set(incident(id="rbx-dns", regions=("RBX",), status="identified"), T0 + MIN)
    sent = {
        "sbg-power": part(PostKind.OPENED, 1, PostState.SENT),
        "rbx-dns": replace(
            part(PostKind.OPENED, 1, PostState.SENT), key="rbx-dns:r1:x-en:opened.1:p1"
        ),
    }
    result = planner.plan(
        list(t.snapshots.values()),
        t.threads,
        X_EN,
        CADENCE,
        T0 + MIN,
        lambda incident_id, channel: [sent[incident_id]],
    )
    assert {d.post.incident_id: d.reply_to for d in result.decisions} == {
        "sbg-power": "sbg-power:r1:x-en:opened.1:p1",
        "rbx-dns": "rbx-dns:r1:x-en:opened.1:p1",
    }


def test_a_reminder_never_drops_an_unsent_update() -> None:
    t = Timeline(X_EN)
    t.set(incident(), T0)
    t.plan(T0)
    t.set(incident(status="identified"), T0 + MIN)
    t.plan(T0 + MIN)  # the update, still unsent when its promise comes
    tail = [part(PostKind.OPENED, 1, PostState.SENT), part(PostKind.UPDATE, 2)]
    (reminder,) = planner.plan(
        list(t.snapshots.values()),
        t.threads,
        X_EN,
        CADENCE,
        T0 + 16 * MIN,
        lambda incident_id, channel: tail,
    ).decisions
    assert reminder.post.kind is PostKind.REMINDER
    assert reminder.supersedes == () and reminder.reply_to == tail[1].key


# -- stale posts ------------------------------------------------------------------------------


def stale_opening(
    status: str = "investigating", revision: int = 1, **changes: object
) -> tuple[list[OutboxPost], Snapshot, ThreadState]:
    stale = [part(PostKind.OPENED, 1, promise=T0 + 15 * MIN)]
    snapshot = Snapshot(incident(status=status, **changes), revision, T0, T0)
    thread = ThreadState(
        "sbg-power", "x-en", 1, PostKind.OPENED, "investigating", T0, T0 + 15 * MIN, 1, False,
        stale[0].key,
    )  # fmt: skip
    return stale, snapshot, thread


def test_a_stale_post_of_an_incident_gone_from_the_feed_is_not_planned_again() -> None:
    stale, snapshot, thread = stale_opening()
    late = T0 + 30 * MIN
    assert planner.replan_stale(stale, None, thread, stale, X_EN, CADENCE, late) is None
    assert planner.replan_stale(stale, snapshot, None, stale, X_EN, CADENCE, late) is None


def test_a_stale_post_says_the_newest_state_and_the_thread_carries_on_from_it() -> None:
    stale, snapshot, thread = stale_opening("identified", 2)
    late = T0 + 30 * MIN  # the channel was paused; ops said "identified" meanwhile
    decision = planner.replan_stale(stale, snapshot, thread, stale, X_EN, CADENCE, late)
    assert decision is not None
    post = decision.post
    assert (post.incident_id, post.channel, post.kind, post.revision) == (
        "sbg-power",
        "x-en",
        PostKind.OPENED,
        2,
    )
    t = Timeline(X_EN)
    t.snapshots = {"sbg-power": snapshot}
    t.threads = planner.apply({("sbg-power", "x-en"): thread}, [decision])
    # the opening says "identified": no second post about it, the next at its promise
    soon = t.plan(late + MIN)
    assert soon.decisions == [] and soon.wake_at == late + 15 * MIN


def test_a_stale_post_leaves_behind_the_next_update_time_it_waited_past() -> None:
    stale, snapshot, thread = stale_opening(next_update_at=T0 + 20 * MIN)
    late = T0 + 30 * MIN
    decision = planner.replan_stale(stale, snapshot, thread, stale, X_EN, CADENCE, late)
    assert decision is not None and decision.post.next_update_at == late + 15 * MIN
    threads = planner.apply({("sbg-power", "x-en"): thread}, [decision])
    after = planner.plan([snapshot], threads, X_EN, CADENCE, late + MIN)
    assert after.decisions == [] and after.wake_at == late + 15 * MIN


def test_a_stale_post_of_a_reopened_incident_keeps_the_cadence_of_its_new_status() -> None:
    stale, snapshot, thread = stale_opening(severity="major")
    late = T0 + timedelta(hours=5)  # an old incident: hourly, had it not been reopened
    reopened = replace(thread, reopened_at=late - 10 * MIN)
    decision = planner.replan_stale(stale, snapshot, reopened, stale, X_EN, CADENCE, late)
    assert decision is not None and decision.post.next_update_at == late + 15 * MIN


def test_a_stale_post_that_says_a_maintenance_started_is_not_followed_by_a_second_start() -> None:
    start = maintenance().starts_at
    assert start is not None
    # the update about the moved window waited (paused channel) until ops started it
    stale = [replace(part(PostKind.UPDATE, 2), incident_id="sbg-maint")]
    thread = ThreadState(
        "sbg-maint", "x-en", 1, PostKind.UPDATE, "scheduled", T0, start, 2, False, stale[0].key
    )
    started = Snapshot(maintenance(status="in_progress"), 2, T0, start)
    decision = planner.replan_stale(stale, started, thread, stale, X_EN, CADENCE, start + MIN)
    assert decision is not None and decision.post.revision == 2
    threads = planner.apply({("sbg-maint", "x-en"): thread}, [decision])
    edited = Snapshot(
        maintenance(status="in_progress", message=Localized.of("Half the racks done")),
        3,
        T0,
        start + 30 * MIN,
    )
    (edit,) = planner.plan([edited], threads, X_EN, CADENCE, start + 30 * MIN).decisions
    assert edit.post.kind is PostKind.UPDATE
