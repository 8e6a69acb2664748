"""The store contract as tests: every backend must pass all of them.

A backend's test module subclasses ``StoreContract`` and provides one fixture,
``open_store``: a function that opens the backend's store, the same data each time (so a
second call is the daemon restarting). See ``test_store.py`` for SQLite.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from broadcaster import planner
from broadcaster.model import (
    Incident,
    IncidentKind,
    Localized,
    PlannedPost,
    PostKind,
    PostState,
    ThreadState,
)
from broadcaster.store import ChannelChange, ChannelState, DataStore

T0 = datetime(2017, 11, 9, 6, 25, tzinfo=UTC)
PROMISE = timedelta(minutes=15)

OpenStore = Callable[[], DataStore]


def incident(**kw: object) -> Incident:
    base: dict[str, object] = dict(
        id="sbg",
        title=Localized.of({"en": "Outage", "fr": "Panne"}),
        status="investigating",
        started_at=T0,
        message=Localized.of("Power lost"),
    )
    base.update(kw)
    return Incident(**base)  # type: ignore[arg-type]


def record(
    store: DataStore,
    kind: PostKind,
    seq: int,
    revision: int = 1,
    parts: int = 1,
    at: datetime = T0,
    *,
    incident_id: str = "sbg",
    channel: str = "x-en",
    replaces: tuple[str, ...] = (),
) -> PlannedPost:
    """Record post number ``seq`` of a thread, as the editor would."""
    promise = None if kind.is_final else at + PROMISE
    post = PlannedPost(incident_id, channel, kind, revision, seq, at, promise)
    thread = ThreadState(
        incident_id,
        channel,
        revision,
        kind,
        "investigating",
        at,
        promise,
        seq,
        kind.is_final,
        post.key(parts),
    )
    texts = [(f"{incident_id} {kind} {seq} part {i}", 10, 280) for i in range(parts)]
    # What the planner decides from the thread's tail, as the editor records it: so these
    # tests also check that the tails a backend returns lead to the right decisions.
    tail = store.thread_tail(incident_id, channel)
    superseded = (*planner.supersedes(kind, tail), *replaces)
    reply_to = planner.thread_parent(tail, superseded)
    store.record_post(post, texts, "en", thread, reply_to=reply_to, supersedes=superseded)
    return post


def states(store: DataStore) -> dict[str, PostState]:
    return {p.key: p.state for p in store.posts()}


class StoreContract:
    """What the daemon relies on, whatever the backend."""

    @pytest.fixture
    def store(self, open_store: OpenStore) -> Iterator[DataStore]:
        store = open_store()
        yield store
        store.close()

    # -- incidents and revisions ---------------------------------------------------------

    def test_revisions_increase_only_on_public_changes(self, store: DataStore) -> None:
        assert store.apply_incidents([incident()], T0) == ["sbg"]
        assert store.apply_incidents([incident()], T0) == []
        assert store.apply_incidents([incident(services=("VPS",))], T0) == ["sbg"]
        assert store.snapshot("sbg").revision == 1  # type: ignore[union-attr]
        store.apply_incidents([incident(status="identified")], T0 + timedelta(minutes=1))
        snap = store.snapshot("sbg")
        assert snap is not None and snap.revision == 2 and snap.previous_status == "investigating"
        assert snap.incident.services == ()  # the newest description wins
        assert snap.first_seen_at == T0 and snap.changed_at == T0 + timedelta(minutes=1)

    def test_an_unknown_incident_has_no_snapshot(self, store: DataStore) -> None:
        assert store.snapshot("nope") is None
        assert store.snapshots() == []

    def test_snapshots_come_first_seen_first(self, store: DataStore) -> None:
        store.apply_incidents([incident(id="b")], T0)
        store.apply_incidents([incident(id="a")], T0 + timedelta(seconds=1))
        assert [s.incident.id for s in store.snapshots()] == ["b", "a"]

    def test_a_closed_incident_stays_active_until_its_threads_said_so(
        self, store: DataStore
    ) -> None:
        store.apply_incidents([incident(), incident(id="quiet")], T0)
        record(store, PostKind.OPENED, 1)
        store.apply_incidents(
            [incident(status="resolved", resolved_at=T0), incident(id="quiet", status="resolved")],
            T0,
        )
        assert [s.incident.id for s in store.snapshots(active_only=True)] == ["sbg"]
        record(store, PostKind.RESOLVED, 2, revision=2)
        assert store.snapshots(active_only=True) == []
        assert len(store.snapshots()) == 2

    def test_snapshots_and_threads_can_be_read_for_some_incidents_only(
        self, store: DataStore
    ) -> None:
        store.apply_incidents([incident(id="b"), incident(id="a"), incident(id="c")], T0)
        record(store, PostKind.OPENED, 1, incident_id="a")
        record(store, PostKind.OPENED, 1, incident_id="c")
        assert [s.incident.id for s in store.snapshots(ids={"c", "b", "zz"})] == ["b", "c"]
        assert store.snapshots(active_only=True, ids=[]) == []
        assert list(store.threads(ids=["a", "b"])) == [("a", "x-en")]
        assert set(store.threads()) == {("a", "x-en"), ("c", "x-en")}

    def test_thread_timings_say_what_is_due_without_the_whole_incident(
        self, store: DataStore
    ) -> None:
        asked = T0 + timedelta(minutes=7)
        store.apply_incidents(
            [incident(), incident(id="new", next_update_at=asked), incident(id="old")], T0
        )
        record(store, PostKind.OPENED, 1)
        record(store, PostKind.OPENED, 1, channel="mastodon-fr")
        record(store, PostKind.OPENED, 1, incident_id="old")
        store.apply_incidents([incident(id="old", status="resolved", resolved_at=T0)], T0)
        record(store, PostKind.RESOLVED, 2, revision=2, incident_id="old")
        store.apply_incidents([incident(status="identified")], T0)
        timings = {(t.incident_id, t.channel): t for t in store.thread_timings()}
        assert set(timings) == {("sbg", "x-en"), ("sbg", "mastodon-fr"), ("new", None)}
        x = timings[("sbg", "x-en")]
        assert (x.revision, x.last_revision, x.final, x.closed) == (2, 1, False, False)
        assert (x.promised_at, x.last_planned_at, x.asked_at) == (T0 + PROMISE, T0, None)
        assert timings[("new", None)].asked_at == asked
        order = [t.incident_id for t in store.thread_timings()]
        active = [s.incident.id for s in store.snapshots(active_only=True)]
        assert sorted(set(order), key=order.index) == active, "first seen first"
        some = store.thread_timings(ids=["new", "old"])
        assert [(t.incident_id, t.channel) for t in some] == [("new", None)]
        starts = T0 + timedelta(hours=1)
        works = incident(
            id="works",
            kind=IncidentKind.MAINTENANCE,
            status="scheduled",
            starts_at=starts,
            ends_at=starts + timedelta(hours=1),
        )
        store.apply_incidents([works], T0)
        (timing,) = store.thread_timings(ids=["works"])
        assert (timing.kind, timing.status, timing.starts_at) == (
            "maintenance",
            "scheduled",
            starts,
        )
        assert (x.kind, x.status, x.starts_at) == ("incident", "identified", None)

    def test_the_change_token_moves_when_someone_else_writes(self, open_store: OpenStore) -> None:
        mine, other = open_store(), open_store()
        try:
            token = mine.change_token()
            if token is None:
                return  # the backend cannot tell: nothing is cached across transactions
            mine.apply_incidents([incident()], T0)
            assert mine.change_token() == token, "what it wrote itself, it knows"
            other.apply_incidents([incident(id="b")], T0)
            assert mine.change_token() != token
        finally:
            other.close()
            mine.close()

    # -- source marks --------------------------------------------------------------------

    def test_a_source_repeating_itself_does_not_undo_a_newer_word(self, store: DataStore) -> None:
        store.apply_incidents([incident()], T0, source="file")
        store.apply_incidents([incident(status="identified")], T0, source="events")
        # the file, re-read after a restart, still says "investigating": skipped
        assert store.apply_incidents([incident(origin="state.toml:3")], T0, source="file") == []
        assert store.snapshot("sbg").incident.status == "identified"  # type: ignore[union-attr]
        assert store.source_mark("file", "sbg") is not None
        assert store.source_mark("file", "sbg") != store.source_mark("events", "sbg")
        assert store.source_mark("file", "other") is None
        # a change in the file is the newest word again
        assert store.apply_incidents([incident(status="monitoring")], T0, source="file") == ["sbg"]

    # -- the outbox ----------------------------------------------------------------------

    def test_everything_survives_a_restart(self, open_store: OpenStore) -> None:
        store = open_store()
        store.apply_incidents([incident()], T0)
        opened = record(store, PostKind.OPENED, 1)
        reminder = record(store, PostKind.REMINDER, 2)
        store.mark_sending(opened.key(1))
        store.mark_sent(opened.key(1), "111", "https://x/111", T0)
        store.mark_sending(reminder.key(1))  # then the process dies
        store.close()
        again = open_store()
        try:
            assert again.snapshot("sbg").incident == incident()  # type: ignore[union-attr]
            assert again.threads()[("sbg", "x-en")].post_count == 2
            nxt = again.next_to_deliver("x-en")
            assert nxt is not None and nxt.key == reminder.key(1)
            assert nxt.state is PostState.SENDING and nxt.attempts == 1
            parent = again.latest_sent_before(nxt)
            assert parent is not None and parent.remote_id == "111"
            assert parent.remote_url == "https://x/111" and parent.sent_at == T0
        finally:
            again.close()

    def test_a_thread_remembers_when_its_incident_was_reopened(self, store: DataStore) -> None:
        # The cadence restarts at a reopening; the store must give that moment back, and
        # so must a working copy (preview and simulate plan on one).
        record(store, PostKind.OPENED, 1)
        thread = store.threads()[("sbg", "x-en")]
        assert thread.reopened_at is None
        reopened = replace(thread, post_count=2, reopened_at=T0 + timedelta(hours=3))
        post = PlannedPost("sbg", "x-en", PostKind.UPDATE, 2, 2, T0, T0 + timedelta(hours=4))
        store.record_post(post, [("again", 5, 280)], "en", reopened, reply_to=None, supersedes=())
        assert store.threads()[("sbg", "x-en")].reopened_at == T0 + timedelta(hours=3)
        copy = store.copy_to_memory()
        try:
            assert copy.threads()[("sbg", "x-en")].reopened_at == T0 + timedelta(hours=3)
        finally:
            copy.close()

    def test_a_recorded_post_keeps_its_exact_text_and_promise(self, store: DataStore) -> None:
        post = record(store, PostKind.OPENED, 1)
        (part,) = store.posts()
        assert (part.key, part.text, part.length, part.limit) == (
            post.key(1),
            "sbg opened 1 part 0",
            10,
            280,
        )
        assert (part.kind, part.revision, part.sequence, part.part, part.parts) == (
            PostKind.OPENED,
            1,
            1,
            1,
            1,
        )
        assert part.planned_at == T0 and part.next_update_at == T0 + PROMISE
        assert part.state is PostState.PENDING and part.language == "en"
        assert store.threads()[("sbg", "x-en")] == ThreadState(
            "sbg",
            "x-en",
            1,
            PostKind.OPENED,
            "investigating",
            T0,
            T0 + PROMISE,
            1,
            False,
            post.key(),
        )

    def test_a_newer_post_supersedes_unsent_updates_but_never_an_opening(
        self, store: DataStore
    ) -> None:
        opened = record(store, PostKind.OPENED, 1)
        update = record(store, PostKind.UPDATE, 2, revision=2)
        newer = record(store, PostKind.UPDATE, 3, revision=3)
        assert states(store) == {
            opened.key(1): PostState.PENDING,
            update.key(1): PostState.SUPERSEDED,
            newer.key(1): PostState.PENDING,
        }
        # the newest post replies to the opening, not to the superseded update
        assert next(p for p in store.posts() if p.key == newer.key(1)).reply_to_key == opened.key(1)

    def test_a_post_already_handed_to_the_platform_is_not_superseded(
        self, store: DataStore
    ) -> None:
        record(store, PostKind.OPENED, 1)
        update = record(store, PostKind.UPDATE, 2, revision=2)
        store.mark_sending(update.key(1))
        store.retry_later(update.key(1), "timeout", T0, outcome_unknown=True)
        record(store, PostKind.UPDATE, 3, revision=3)
        assert states(store)[update.key(1)] is PostState.SENDING

    def test_superseding_leaves_a_part_already_handed_to_the_platform_alone(
        self, store: DataStore
    ) -> None:
        # The plan saw these pending; delivery took them since: they may be out there.
        opened = record(store, PostKind.OPENED, 1)
        update = record(store, PostKind.UPDATE, 2, revision=2)
        store.mark_sending(opened.key(1))
        store.mark_sent(opened.key(1), "1", None, T0)
        store.mark_sending(update.key(1))
        post = PlannedPost("sbg", "x-en", PostKind.UPDATE, 3, 3, T0, T0 + PROMISE)
        thread = ThreadState(
            "sbg", "x-en", 3, PostKind.UPDATE, "identified", T0, T0 + PROMISE, 3, False, "k"
        )
        store.record_post(
            post,
            [("newer", 5, 280)],
            "en",
            thread,
            reply_to=opened.key(1),
            supersedes=[opened.key(1), update.key(1)],
        )
        assert states(store) == {
            opened.key(1): PostState.SENT,
            update.key(1): PostState.SENDING,
            post.key(1): PostState.PENDING,
        }
        assert store.next_to_deliver("x-en").key == update.key(1)  # type: ignore[union-attr]

    def test_parts_of_a_long_post_chain_to_each_other(self, store: DataStore) -> None:
        post = record(store, PostKind.OPENED, 1, parts=3)
        posts = store.posts()
        assert [p.key for p in posts] == [post.key(1), post.key(2), post.key(3)]
        assert [p.reply_to_key for p in posts] == [None, post.key(1), post.key(2)]
        assert store.threads()[("sbg", "x-en")].last_post_key == post.key(3)

    def test_a_post_is_recorded_exactly_as_decided(self, store: DataStore) -> None:
        opened = record(store, PostKind.OPENED, 1)
        update = record(store, PostKind.UPDATE, 2, revision=2)
        # the store has no rule of its own: nothing superseded unless told, replies as told
        post = PlannedPost("sbg", "x-en", PostKind.UPDATE, 3, 3, T0, T0 + PROMISE)
        thread = ThreadState(
            "sbg", "x-en", 3, PostKind.UPDATE, "identified", T0, T0 + PROMISE, 3, False, "k"
        )
        store.record_post(post, [("newer", 5, 280)], "en", thread, reply_to=opened.key(1))
        assert states(store) == {
            opened.key(1): PostState.PENDING,
            update.key(1): PostState.PENDING,
            post.key(1): PostState.PENDING,
        }
        assert store.posts()[-1].reply_to_key == opened.key(1)
        assert store.threads()[("sbg", "x-en")] == thread
        store.record_post(
            replace(post, sequence=4),
            [("newest", 6, 280)],
            "en",
            thread,
            reply_to=None,
            supersedes=[opened.key(1), post.key(1)],
        )
        assert states(store)[opened.key(1)] is PostState.SUPERSEDED
        assert states(store)[post.key(1)] is PostState.SUPERSEDED
        assert store.posts()[-1].reply_to_key is None

    def test_a_thread_tail_is_its_unsent_parts_and_its_latest_sent_one(
        self, store: DataStore
    ) -> None:
        opened = record(store, PostKind.OPENED, 1, parts=2)
        update = record(store, PostKind.UPDATE, 2, revision=2)
        other = record(store, PostKind.OPENED, 1, incident_id="other")
        for key in (opened.key(1), opened.key(2)):
            store.mark_sending(key)
            store.mark_sent(key, key, None, T0)
        reminder = record(store, PostKind.REMINDER, 3, revision=2)
        store.mark_sending(reminder.key(1))
        tail = store.thread_tail("sbg", "x-en")
        assert [p.key for p in tail] == [opened.key(2), update.key(1), reminder.key(1)]
        assert [p.state for p in tail] == [
            PostState.SENT,
            PostState.PENDING,
            PostState.SENDING,
        ]
        failed = record(store, PostKind.UPDATE, 4, revision=3)  # supersedes the update
        store.mark_failed(failed.key(1), "refused")
        tail = store.thread_tail("sbg", "x-en")
        assert [p.key for p in tail] == [opened.key(2), reminder.key(1)]
        assert [p.key for p in store.thread_tail("other", "x-en")] == [other.key(1)]
        assert store.thread_tail("other", "mastodon-en") == []
        assert store.thread_tail("unknown", "x-en") == []

    def test_a_failed_post_is_not_replied_to(self, store: DataStore) -> None:
        opened = record(store, PostKind.OPENED, 1)
        update = record(store, PostKind.UPDATE, 2, revision=2)
        store.mark_sending(update.key(1))
        store.mark_failed(update.key(1), "refused")
        newer = record(store, PostKind.UPDATE, 3, revision=3)
        assert states(store)[update.key(1)] is PostState.FAILED
        assert store.posts()[-1].reply_to_key == opened.key(1)
        assert store.posts()[-1].key == newer.key(1)

    def test_duplicate_texts_are_detected_per_channel(self, store: DataStore) -> None:
        record(store, PostKind.OPENED, 1)
        assert store.is_duplicate_text("x-en", "sbg opened 1 part 0")
        assert not store.is_duplicate_text("mastodon-en", "sbg opened 1 part 0")

    def test_a_superseded_text_may_be_said_again(self, store: DataStore) -> None:
        record(store, PostKind.OPENED, 1)
        record(store, PostKind.UPDATE, 2, revision=2)
        record(store, PostKind.UPDATE, 3, revision=3)
        assert not store.is_duplicate_text("x-en", "sbg update 2 part 0")

    def test_a_reminder_never_supersedes_an_unsent_update(self, store: DataStore) -> None:
        record(store, PostKind.OPENED, 1)
        update = record(store, PostKind.UPDATE, 2, revision=2)
        record(store, PostKind.REMINDER, 3, revision=2)
        assert states(store)[update.key(1)] is PostState.PENDING

    def test_a_post_half_sent_is_finished_not_superseded(self, store: DataStore) -> None:
        record(store, PostKind.OPENED, 1)
        update = record(store, PostKind.UPDATE, 2, revision=2, parts=2)
        store.mark_sending(update.key(1))
        store.mark_sent(update.key(1), "2", None, T0)
        record(store, PostKind.UPDATE, 3, revision=3)
        assert states(store)[update.key(2)] is PostState.PENDING

    def test_named_parts_are_superseded_too(self, store: DataStore) -> None:
        opened = record(store, PostKind.OPENED, 1)
        again = record(store, PostKind.OPENED, 2, replaces=(opened.key(1),))
        assert states(store) == {
            opened.key(1): PostState.SUPERSEDED,
            again.key(1): PostState.PENDING,
        }
        assert store.posts()[-1].reply_to_key is None

    def test_a_post_superseded_after_it_was_picked_is_never_sent(self, store: DataStore) -> None:
        record(store, PostKind.OPENED, 1)
        store.mark_sending(store.next_to_deliver("x-en").key)  # type: ignore[union-attr]
        update = record(store, PostKind.UPDATE, 2, revision=2)
        picked = store.next_to_deliver("x-en")
        assert picked is not None and picked.key != update.key(1)
        record(store, PostKind.UPDATE, 3, revision=3)  # a plan runs between pick and send
        assert store.mark_sending(update.key(1)) is False

    def test_a_sent_or_failed_post_cannot_be_sent_again(self, store: DataStore) -> None:
        opened = record(store, PostKind.OPENED, 1)
        update = record(store, PostKind.UPDATE, 2, revision=2)
        assert store.mark_sending(opened.key(1)) is True
        store.mark_sent(opened.key(1), "1", None, T0)
        store.mark_failed(update.key(1), "refused")
        assert store.mark_sending(opened.key(1)) is False
        assert store.mark_sending(update.key(1)) is False
        assert store.next_to_deliver("x-en") is None

    def test_posts_go_out_in_planned_order_per_channel(self, store: DataStore) -> None:
        a = record(store, PostKind.OPENED, 1, incident_id="a")
        b = record(store, PostKind.OPENED, 1, incident_id="b")
        m = record(store, PostKind.OPENED, 1, incident_id="a", channel="mastodon-en")
        assert store.next_to_deliver("x-en").key == a.key(1)  # type: ignore[union-attr]
        assert store.next_to_deliver("mastodon-en").key == m.key(1)  # type: ignore[union-attr]
        store.mark_sending(a.key(1))
        store.mark_sent(a.key(1), "1", None, T0)
        assert store.next_to_deliver("x-en").key == b.key(1)  # type: ignore[union-attr]
        assert [p.key for p in store.posts(channel="x-en")] == [a.key(1), b.key(1)]
        assert [p.key for p in store.posts(states=(PostState.SENT,))] == [a.key(1)]

    def test_a_retry_keeps_the_error_and_the_time(self, store: DataStore) -> None:
        opened = record(store, PostKind.OPENED, 1)
        store.mark_sending(opened.key(1))
        at = T0 + timedelta(seconds=30)
        store.retry_later(opened.key(1), "refused for now", at, outcome_unknown=False)
        (post,) = store.posts()
        assert (post.state, post.last_error, post.next_attempt_at) == (
            PostState.PENDING,
            "refused for now",
            at,
        )
        store.mark_sending(opened.key(1))
        store.mark_sent(opened.key(1), "1", "https://x/1", T0)
        (post,) = store.posts()
        assert (post.state, post.last_error, post.next_attempt_at) == (PostState.SENT, None, None)
        assert post.attempts == 2

    def test_the_thread_root_and_parents_are_sent_posts(self, store: DataStore) -> None:
        opened = record(store, PostKind.OPENED, 1)
        update = record(store, PostKind.UPDATE, 2, revision=2, parts=2)
        assert store.thread_root("sbg", "x-en") is None
        store.mark_sending(opened.key(1))
        store.mark_sent(opened.key(1), "1", "https://x/1", T0)
        root = store.thread_root("sbg", "x-en")
        assert root is not None and root.remote_url == "https://x/1"
        (first, second) = store.posts(states=(PostState.PENDING,))
        assert store.latest_sent_before(first).key == opened.key(1)  # type: ignore[union-attr]
        store.mark_sending(update.key(1))
        store.mark_sent(update.key(1), "2", None, T0)
        assert store.latest_sent_before(second).key == update.key(1)  # type: ignore[union-attr]

    def test_a_part_is_read_back_by_its_key(self, store: DataStore) -> None:
        opened = record(store, PostKind.OPENED, 1)
        update = record(store, PostKind.UPDATE, 2, revision=2, parts=2)
        store.mark_sending(opened.key(1))
        store.mark_sent(opened.key(1), "1", "https://x/1", T0)
        assert store.post(opened.key(1)) == store.posts()[0]
        part = store.post(update.key(2))
        assert part is not None and part.reply_to_key == update.key(1)
        assert part.state is PostState.PENDING and part.text == "sbg update 2 part 1"
        assert store.post("never-recorded") is None

    def test_stale_posts_are_whole_unsent_posts_whose_promise_passed(
        self, store: DataStore
    ) -> None:
        opened = record(store, PostKind.OPENED, 1, parts=2)
        update = record(store, PostKind.UPDATE, 2, revision=2, at=T0 + timedelta(minutes=5))
        record(store, PostKind.RESOLVED, 1, channel="m")  # no promise: never stale
        assert store.stale_posts(T0 + PROMISE - timedelta(seconds=1)) == []
        stale = store.stale_posts(T0 + PROMISE)
        assert [[p.key for p in group] for group in stale] == [[opened.key(1), opened.key(2)]]
        store.mark_sending(opened.key(1))
        stale = store.stale_posts(T0 + 2 * PROMISE)
        assert [[p.key for p in group] for group in stale] == [[update.key(1)]]

    def test_sent_times_and_counts(self, store: DataStore) -> None:
        opened = record(store, PostKind.OPENED, 1)
        update = record(store, PostKind.UPDATE, 2, revision=2)
        record(store, PostKind.OPENED, 1, channel="mastodon-en")
        store.mark_sending(opened.key(1))
        store.mark_sent(opened.key(1), "1", None, T0 + timedelta(minutes=1))
        store.mark_failed(update.key(1), "refused")
        assert store.sent_times("x-en", T0) == [T0 + timedelta(minutes=1)]
        assert store.sent_times("x-en", T0 + timedelta(minutes=2)) == []
        assert store.counts() == {
            ("x-en", PostState.SENT): 1,
            ("x-en", PostState.FAILED): 1,
            ("mastodon-en", PostState.PENDING): 1,
        }

    def test_a_working_copy_never_writes_back(self, store: DataStore) -> None:
        store.apply_incidents([incident()], T0)
        copy = store.copy_to_memory()
        try:
            record(copy, PostKind.OPENED, 1)
            copy.mark_sending(copy.posts()[0].key)
            copy.update_channel("x-en", ChannelChange(healthy=False), T0)
            assert [p.state for p in copy.posts()] == [PostState.SENDING]
            assert copy.snapshot("sbg") == store.snapshot("sbg")
        finally:
            copy.close()
        assert store.posts() == [] and store.threads() == {} and store.channel_states() == {}

    def test_a_failed_write_in_a_batch_undoes_only_itself(self, store: DataStore) -> None:
        with store.batch():
            record(store, PostKind.OPENED, 1)
            with pytest.raises(Exception):  # noqa: B017 - same key: refused, undone alone
                record(store, PostKind.OPENED, 1)
            assert store.in_transaction()
            record(store, PostKind.UPDATE, 2, revision=2)
        assert not store.in_transaction()
        assert [p.kind for p in store.posts()] == [PostKind.OPENED, PostKind.UPDATE]

    def test_a_batch_is_all_or_nothing(self, store: DataStore) -> None:
        with pytest.raises(RuntimeError), store.batch():
            store.apply_incidents([incident()], T0)
            record(store, PostKind.OPENED, 1)
            raise RuntimeError("the plan failed")
        assert store.snapshots() == [] and store.posts() == [] and store.threads() == {}

    # -- channel state -------------------------------------------------------------------

    def test_a_channel_never_updated_has_the_default_state(self, store: DataStore) -> None:
        assert store.channel_states() == {}
        assert store.channel_state("x-en") == ChannelState("x-en")

    def test_a_channel_change_keeps_what_it_does_not_name(self, store: DataStore) -> None:
        until = T0 + timedelta(minutes=15)
        store.update_channel("x-en", ChannelChange(max_characters=280), T0)
        store.update_channel("x-en", ChannelChange(paused_until=until, last_error="429"), T0)
        store.update_channel("x-en", ChannelChange(healthy=False, replies_refused=True), T0)
        assert store.channel_states() == {
            "x-en": ChannelState("x-en", False, until, "429", True, 280)
        }
        store.update_channel("x-en", ChannelChange(recovered=True), T0)
        assert store.channel_state("x-en") == ChannelState(
            "x-en", replies_refused=True, max_characters=280
        )

    def test_channel_state_survives_a_restart(self, open_store: OpenStore) -> None:
        store = open_store()
        store.update_channel("x-en", ChannelChange(paused_until=T0), T0)
        store.close()
        again = open_store()
        try:
            assert again.channel_state("x-en").paused_until == T0
        finally:
            again.close()

    # -- leases ----------------------------------------------------------------------------

    def test_a_free_channel_is_leased_to_whoever_asks_and_renewed(self, store: DataStore) -> None:
        lease = store.acquire_lease("x-en", "eu-1", timedelta(seconds=30))
        assert lease is not None and (lease.channel, lease.holder) == ("x-en", "eu-1")
        again = store.acquire_lease("x-en", "eu-1", timedelta(seconds=30))
        assert again is not None and again.token == lease.token
        assert again.expires_at >= lease.expires_at
        assert store.leases()["x-en"] == again

    def test_the_holder_marks_posts_under_its_lease(self, store: DataStore) -> None:
        opened = record(store, PostKind.OPENED, 1)
        update = record(store, PostKind.UPDATE, 2, revision=2)
        lease = store.acquire_lease("x-en", "eu-1", timedelta(seconds=30))
        assert store.mark_sending(opened.key(1), lease=lease)
        store.mark_sent(opened.key(1), "1", None, T0, lease=lease)
        store.retry_later(update.key(1), "later", T0, outcome_unknown=False, lease=lease)
        store.mark_failed(update.key(1), "refused", lease=lease)
        assert states(store) == {opened.key(1): PostState.SENT, update.key(1): PostState.FAILED}

    def test_instances_say_they_are_alive(self, store: DataStore) -> None:
        store.heartbeat("eu-1", timedelta(seconds=15))
        assert list(store.instances()) == ["eu-1"]
        assert store.schema_version() >= 1
