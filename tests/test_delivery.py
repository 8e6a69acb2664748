"""ChannelWorker's decisions, one step at a time, on a real store and a scripted channel.

The channel here is a stand-in for our own ``Channel`` contract (not for a client
library): it answers each call with the next scripted outcome, so every branch of
delivery can be reached on purpose. test_platforms.py runs the same code against the X
and Mastodon sandboxes through the real clients.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support import ROOT

from broadcaster import planner
from broadcaster.app import backoff_for, build
from broadcaster.channels.base import (
    Channel,
    ChannelUnhealthy,
    DeliveryError,
    PublishRequest,
    PublishResult,
    RateLimited,
    Rejected,
    RepliesRefused,
    TransientError,
)
from broadcaster.config import ConfigError, load_config
from broadcaster.delivery import Backoff, Budget, ChannelWorker
from broadcaster.model import PlannedPost, PostKind, PostState, ThreadState
from broadcaster.store import Store
from broadcaster.textfit import LengthRule, rule_for

T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)

Outcome = PublishResult | DeliveryError | None


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class ScriptedChannel(Channel):
    """Answers publish and find_published with scripted outcomes, then with defaults
    (published under a fresh id; not found)."""

    platform = "dryrun"
    language = "en"

    def __init__(self) -> None:
        self.name = "c"
        self.publishes: list[Outcome] = []
        self.finds: list[Outcome] = []
        self.calls: list[tuple[str, str]] = []
        self.requests: list[PublishRequest] = []

    def length_rule(self) -> LengthRule:
        return rule_for("dryrun", 500)

    def publish(self, request: PublishRequest) -> PublishResult:
        self.calls.append(("publish", request.post.key))
        self.requests.append(request)
        outcome = self.publishes.pop(0) if self.publishes else None
        result = self._play(outcome)
        return result or PublishResult(remote_id=f"id-{len(self.calls)}")

    def find_published(self, request: PublishRequest) -> PublishResult | None:
        self.calls.append(("find", request.post.key))
        return self._play(self.finds.pop(0) if self.finds else None)

    @staticmethod
    def _play(outcome: Outcome) -> PublishResult | None:
        if isinstance(outcome, DeliveryError):
            raise outcome
        return outcome


def record(
    store: Store,
    incident: str = "inc",
    kind: PostKind = PostKind.OPENED,
    sequence: int = 1,
    parts: tuple[str, ...] = ("text",),
) -> list[str]:
    """Record one planned post, as the editor does; returns its part keys."""
    planned = PlannedPost(incident, "c", kind, sequence, sequence, T0, None)
    thread = ThreadState(
        incident, "c", sequence, kind, "investigating", T0, None, sequence, False, planned.key()
    )
    texts = [(f"{incident} {kind.value} {sequence} {text}", 10, 500) for text in parts]
    tail = store.thread_tail(incident, "c")
    superseded = planner.supersedes(kind, tail)
    reply_to = planner.thread_parent(tail, superseded)
    store.record_post(planned, texts, "en", thread, reply_to=reply_to, supersedes=superseded)
    return [planned.key(i) for i in range(1, len(parts) + 1)]


@pytest.fixture
def store(tmp_path: Path):
    s = Store(tmp_path / "store.sqlite3")
    yield s
    s.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def channel() -> ScriptedChannel:
    return ScriptedChannel()


def worker(store: Store, channel: ScriptedChannel, clock: Clock, **kwargs) -> ChannelWorker:
    kwargs.setdefault("backoff", Backoff(base=1, cap=64, unhealthy_retry=10))
    return ChannelWorker(channel, store, clock=clock, **kwargs)


def state(store: Store, key: str) -> PostState:
    (post,) = [p for p in store.posts() if p.key == key]
    return post.state


def until() -> datetime:
    return T0 + timedelta(seconds=30)


# -- an unknown outcome stays unknown until the platform was looked at ------------------


@pytest.mark.parametrize(
    "refusal",
    [
        RateLimited("429 on the timeline", until=until()),
        ChannelUnhealthy("401 credentials refused"),
        Rejected("404 account not found"),
        TransientError("503 server error"),
    ],
    ids=["429", "401", "404", "503"],
)
def test_a_refused_look_up_keeps_the_post_sending(store, channel, clock, refusal):
    (key,) = record(store)
    w = worker(store, channel, clock)
    channel.publishes = [TransientError("network: ReadTimeout")]
    w.step()
    assert state(store, key) is PostState.SENDING

    channel.finds = [refusal]
    clock.advance(60)
    w.step()
    # Had it become "pending", the next try would publish without looking: a duplicate.
    assert state(store, key) is PostState.SENDING

    channel.finds = [PublishResult(remote_id="found-1")]
    clock.advance(60)
    w.step()
    (post,) = store.posts()
    assert (post.state, post.remote_id) == (PostState.SENT, "found-1")
    assert [call for call, _ in channel.calls] == ["publish", "find", "find"]


def test_once_looked_for_and_not_found_a_refusal_means_not_published(store, channel, clock):
    (key,) = record(store)
    w = worker(store, channel, clock)
    channel.publishes = [TransientError("network"), RateLimited("429", until=until())]
    w.step()
    clock.advance(60)
    w.step()  # finds nothing, publishes, meets a 429: this attempt did not publish
    assert state(store, key) is PostState.PENDING
    clock.advance(60)
    w.step()
    assert [call for call, _ in channel.calls] == ["publish", "find", "publish", "publish"]
    assert state(store, key) is PostState.SENT


def test_a_post_refused_for_good_fails_and_the_next_one_goes(store, channel, clock):
    (first,) = record(store, "a")
    (second,) = record(store, "b")
    channel.publishes = [Rejected("422 Validation failed: Text character limit exceeded")]
    w = worker(store, channel, clock)
    assert w.step() == 0
    assert w.step() == 0
    assert (state(store, first), state(store, second)) == (PostState.FAILED, PostState.SENT)
    (failed,) = store.posts(states=(PostState.FAILED,))
    assert failed.last_error == "422 Validation failed: Text character limit exceeded"


# -- health, pauses and their memory across restarts ------------------------------------


def test_any_later_success_marks_an_unhealthy_channel_healthy_again(store, channel, clock):
    (first,) = record(store, "a")
    channel.publishes = [ChannelUnhealthy("401 credentials refused"), Rejected("422 too long")]
    w = worker(store, channel, clock)
    assert w.step() == 10  # the unhealthy retry
    assert store.channel_states()["c"].healthy is False
    assert state(store, first) is PostState.PENDING
    clock.advance(10)
    w.step()  # the same post, refused for good this time
    assert state(store, first) is PostState.FAILED
    assert store.channel_states()["c"].healthy is False
    record(store, "b")
    w.step()  # a post that never met the refusal
    health = store.channel_states()["c"]
    assert (health.healthy, health.last_error) == (True, None)


def test_a_pause_survives_a_restart_and_no_request_is_made_before_its_end(store, channel, clock):
    record(store, "a")
    channel.publishes = [RateLimited("429", until=until())]
    worker(store, channel, clock).step()
    record(store, "b")
    restarted = worker(store, channel, clock)
    clock.advance(29)
    assert restarted.step() == pytest.approx(1.0)
    assert len(channel.calls) == 1
    clock.advance(1)
    restarted.step()
    restarted.step()
    assert len(channel.calls) == 3
    assert store.channel_states()["c"].paused_until is None


def test_replies_refused_are_remembered_across_a_restart(store, channel, clock):
    record(store, "a")
    channel.publishes = [RepliesRefused("403 reply to this conversation is not allowed")]
    w = worker(store, channel, clock)
    assert w.step() == 0
    assert w.step() == 0
    # The refused post goes again, this time asked to go standalone.
    assert [r.replies_refused for r in channel.requests] == [False, True]
    record(store, "b")
    fresh = ScriptedChannel()
    restarted = worker(store, fresh, clock)
    assert restarted.replies_refused
    restarted.step()
    assert [r.replies_refused for r in fresh.requests] == [True]


# -- backoff ------------------------------------------------------------------------------


def test_the_backoff_grows_while_look_ups_keep_failing_and_resets_on_success(store, channel, clock):
    record(store, "a")
    channel.publishes = [TransientError("network")]
    channel.finds = [TransientError("503")] * 5
    w = worker(store, channel, clock)
    delays = []
    for _ in range(6):
        delays.append(w.step())
        clock.advance(delays[-1])
    # Full jitter in the upper half: the n-th consecutive failure waits 2^(n-2)..2^(n-1) s.
    for n, delay in enumerate(delays, start=1):
        assert 2 ** (n - 1) / 2 <= delay <= 2 ** (n - 1)
    assert w.step() == 0  # found nothing, published
    record(store, "b")
    channel.publishes = [TransientError("network")]
    assert w.step() <= 1


def test_the_budget_spaces_posts_and_holds_the_queue_meanwhile(store, channel, clock):
    for incident in "abc":
        record(store, incident)
    w = worker(store, channel, clock, budget=Budget(max_posts=2, window=timedelta(seconds=10)))
    assert w.step() == 0
    clock.advance(1)
    assert w.step() == 0
    clock.advance(1)
    assert w.step() == pytest.approx(8)  # the first of the two leaves the window at T0+10
    assert len(channel.calls) == 2


# -- retry settings from the config ---------------------------------------------------------


def config_with(tmp_path: Path, channel_keys: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f"""
[broadcaster]
templates_dir = "{ROOT / "message_templates"}"

[channels.x-en]
platform = "x"
language = "en"
{channel_keys}
"""
    )
    return path


def test_retry_settings_come_from_each_channels_config(tmp_path: Path):
    config = load_config(config_with(tmp_path, 'retry_initial = "50ms"\nretry_max = "2s"'))
    assert backoff_for(config.channels["x-en"]) == Backoff(base=0.05, cap=2.0, unhealthy_retry=2.0)
    app = build(config, dry_run=True)
    try:
        assert app.delivery.workers["x-en"].backoff == Backoff(0.05, 2.0, 2.0)
    finally:
        app.close()
    defaults = load_config(config_with(tmp_path, ""))
    assert backoff_for(defaults.channels["x-en"]) == Backoff(base=1.0, cap=300.0)


def test_retry_max_below_retry_initial_is_a_config_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="retry_max: must not be shorter than retry_initial"):
        load_config(config_with(tmp_path, 'retry_initial = "10s"\nretry_max = "1s"'))


# -- an update refused before publication is still replaceable -----------------------------


def test_an_update_refused_with_a_429_is_superseded_by_a_newer_one(store, channel, clock):
    record(store, "a")
    (stale,) = record(store, "a", PostKind.UPDATE, 2)
    w = worker(store, channel, clock)
    channel.publishes = [None, RateLimited("429", until=until())]
    w.step()
    w.step()
    assert state(store, stale) is PostState.PENDING
    record(store, "a", PostKind.UPDATE, 3)
    assert state(store, stale) is PostState.SUPERSEDED


# -- what a post replies to ------------------------------------------------------------


def replied_to(channel: ScriptedChannel, key: str) -> str | None:
    (request,) = [r for r in channel.requests if r.post.key == key]
    return request.in_reply_to


def test_a_post_replies_to_the_latest_part_sent_when_its_parent_was_refused(store, channel, clock):
    (opening,) = record(store)
    (update,) = record(store, kind=PostKind.UPDATE, sequence=2)
    (reminder,) = record(store, kind=PostKind.REMINDER, sequence=3)  # planned under the update
    assert store.post(reminder).reply_to_key == update
    w = worker(store, channel, clock)
    channel.publishes = [None, Rejected("422 refused for good")]
    for _ in range(3):
        w.step()
    assert state(store, update) is PostState.FAILED
    assert replied_to(channel, reminder) == store.post(opening).remote_id


def test_a_post_meant_to_be_superseded_that_went_out_anyway_stays_in_the_chain(
    store, channel, clock
):
    (opening,) = record(store)
    (update,) = record(store, kind=PostKind.UPDATE, sequence=2)
    w = worker(store, channel, clock)
    w.step()  # the opening goes out
    assert store.mark_sending(update)  # delivery took the update while a newer one was planned
    newer = PlannedPost("inc", "c", PostKind.UPDATE, 3, 3, T0, None)
    thread = ThreadState("inc", "c", 3, PostKind.UPDATE, "identified", T0, None, 3, False, "k")
    store.record_post(
        newer, [("newer", 5, 500)], "en", thread, reply_to=opening, supersedes=[update]
    )
    w.step()  # looked for, not found: the update goes out after all
    w.step()
    assert [p.state for p in store.posts()] == [PostState.SENT] * 3
    assert replied_to(channel, update) == store.post(opening).remote_id
    assert replied_to(channel, newer.key(1)) == store.post(update).remote_id
