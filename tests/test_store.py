"""The store survives restarts: nothing recorded is lost, nothing sent is sent again."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from broadcaster.model import (
    Incident,
    Localized,
    PlannedPost,
    PostKind,
    PostState,
    ThreadState,
)
from broadcaster.store import Store

T0 = datetime(2017, 11, 9, 6, 25, tzinfo=UTC)


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
    store: Store, kind: PostKind, seq: int, revision: int = 1, parts: int = 1, at: datetime = T0
) -> PlannedPost:
    post = PlannedPost("sbg", "x-en", kind, revision, seq, at, at + timedelta(minutes=15))
    thread = ThreadState(
        "sbg",
        "x-en",
        revision,
        kind,
        "investigating",
        at,
        at + timedelta(minutes=15),
        seq,
        False,
        post.key(),
    )
    store.record_post(
        post, [(f"{kind} {seq} part {i}", 10, 280) for i in range(parts)], "en", thread
    )
    return post


def test_revisions_increase_only_on_public_changes(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    assert store.apply_incidents([incident()], T0) == ["sbg"]
    assert store.apply_incidents([incident()], T0) == []
    store.apply_incidents([incident(services=("VPS",))], T0)
    assert store.snapshot("sbg").revision == 1  # type: ignore[union-attr]
    store.apply_incidents([incident(status="identified")], T0 + timedelta(minutes=1))
    snap = store.snapshot("sbg")
    assert snap is not None and snap.revision == 2 and snap.previous_status == "investigating"
    assert snap.incident.services == ()  # the newest description wins


def test_everything_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = Store(path)
    store.apply_incidents([incident()], T0)
    opened = record(store, PostKind.OPENED, 1)
    reminder = record(store, PostKind.REMINDER, 2)
    store.mark_sending(opened.key(1))
    store.mark_sent(opened.key(1), "111", "https://x/111", T0)
    store.mark_sending(reminder.key(1))  # then the process dies
    del store
    again = Store(path)
    assert again.snapshot("sbg").incident == incident()  # type: ignore[union-attr]
    assert again.threads()[("sbg", "x-en")].post_count == 2
    nxt = again.next_to_deliver("x-en")
    assert nxt is not None and nxt.key == reminder.key(1) and nxt.state is PostState.SENDING
    parent = again.parent_of(nxt)
    assert parent is not None and parent.remote_id == "111"


def test_a_newer_post_supersedes_unsent_updates_but_never_an_opening(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    opened = record(store, PostKind.OPENED, 1)
    update = record(store, PostKind.UPDATE, 2, revision=2)
    newer = record(store, PostKind.UPDATE, 3, revision=3)
    states = {p.key: p.state for p in store.posts()}
    assert states[opened.key(1)] is PostState.PENDING
    assert states[update.key(1)] is PostState.SUPERSEDED
    assert states[newer.key(1)] is PostState.PENDING
    # the newest post replies to the opening, not to the superseded update
    assert next(p for p in store.posts() if p.key == newer.key(1)).reply_to_key == opened.key(1)


def test_a_post_already_handed_to_the_platform_is_not_superseded(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    record(store, PostKind.OPENED, 1)
    update = record(store, PostKind.UPDATE, 2, revision=2)
    store.mark_sending(update.key(1))
    store.retry_later(update.key(1), "timeout", T0, outcome_unknown=True)
    record(store, PostKind.UPDATE, 3, revision=3)
    assert {p.key: p.state for p in store.posts()}[update.key(1)] is PostState.SENDING


def test_parts_of_a_long_post_chain_to_each_other(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    post = record(store, PostKind.OPENED, 1, parts=3)
    posts = store.posts()
    assert [p.key for p in posts] == [post.key(1), post.key(2), post.key(3)]
    assert [p.reply_to_key for p in posts] == [None, post.key(1), post.key(2)]
    assert store.threads()[("sbg", "x-en")].last_post_key == post.key(3)


def test_duplicate_texts_are_detected_per_channel(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    record(store, PostKind.OPENED, 1)
    assert store.is_duplicate_text("x-en", "opened 1 part 0")
    assert not store.is_duplicate_text("mastodon-en", "opened 1 part 0")


def test_a_reminder_never_supersedes_an_unsent_update(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    record(store, PostKind.OPENED, 1)
    update = record(store, PostKind.UPDATE, 2, revision=2)
    record(store, PostKind.REMINDER, 3, revision=2)
    assert {p.key: p.state for p in store.posts()}[update.key(1)] is PostState.PENDING


def test_a_post_half_sent_is_finished_not_superseded(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    record(store, PostKind.OPENED, 1)
    update = record(store, PostKind.UPDATE, 2, revision=2, parts=2)
    store.mark_sending(update.key(1))
    store.mark_sent(update.key(1), "2", None, T0)
    record(store, PostKind.UPDATE, 3, revision=3)
    assert {p.key: p.state for p in store.posts()}[update.key(2)] is PostState.PENDING


def test_a_post_superseded_after_it_was_picked_is_never_sent(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    record(store, PostKind.OPENED, 1)
    store.mark_sending(store.next_to_deliver("x-en").key)  # type: ignore[union-attr]
    update = record(store, PostKind.UPDATE, 2, revision=2)
    picked = store.next_to_deliver("x-en")
    assert picked is not None and picked.key != update.key(1)
    record(store, PostKind.UPDATE, 3, revision=3)  # a plan runs between pick and send
    assert store.mark_sending(update.key(1)) is False


def test_a_failed_write_in_a_batch_undoes_only_itself(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    with store.batch():
        record(store, PostKind.OPENED, 1)
        with pytest.raises(sqlite3.IntegrityError):  # same key: refused, undone alone
            record(store, PostKind.OPENED, 1)
        record(store, PostKind.UPDATE, 2, revision=2)
    assert [p.kind for p in store.posts()] == [PostKind.OPENED, PostKind.UPDATE]
