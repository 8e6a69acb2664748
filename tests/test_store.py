"""The SQLite store: the store contract, plus what only SQLite does (WAL, in-memory copies)."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from store_contract import T0, OpenStore, StoreContract, incident, record

from broadcaster.model import PlannedPost, PostKind, PostState
from broadcaster.store import Store
from broadcaster.store.sqlite import SCHEMA


class TestSQLiteStore(StoreContract):
    @pytest.fixture
    def open_store(self, tmp_path: Path) -> OpenStore:
        return lambda: Store(tmp_path / "s.sqlite3")


def test_the_database_is_in_wal_mode_with_full_sync(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    with store.transaction() as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with store.transaction() as db:
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_a_copy_in_memory_never_writes_back(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    store.apply_incidents([incident()], T0)
    copy = store.copy_to_memory()
    record(copy, PostKind.OPENED, 1)
    copy.mark_sending(copy.posts()[0].key)
    assert [p.state for p in copy.posts()] == [PostState.SENDING]
    assert store.posts() == [] and store.threads() == {}
    assert copy.snapshot("sbg") == store.snapshot("sbg")


def test_a_store_written_before_reopened_at_existed_opens_and_keeps_its_threads(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(SCHEMA.replace("    reopened_at TEXT,\n", ""))
    old.close()
    store = Store(path)
    record(store, PostKind.OPENED, 1)
    thread = store.threads()[("sbg", "x-en")]
    assert thread.reopened_at is None
    post = PlannedPost("sbg", "x-en", PostKind.UPDATE, 2, 2, T0, T0 + timedelta(hours=4))
    reopened = replace(thread, post_count=2, reopened_at=T0 + timedelta(hours=3))
    store.record_post(post, [("again", 5, 280)], "en", reopened, reply_to=None, supersedes=())
    assert store.threads()[("sbg", "x-en")].reopened_at == T0 + timedelta(hours=3)
    copy = store.copy_to_memory()
    assert copy.threads()[("sbg", "x-en")].reopened_at == T0 + timedelta(hours=3)
    copy.close()
    store.close()
