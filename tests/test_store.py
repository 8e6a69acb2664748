"""The SQLite store: the store contract, plus what only SQLite does (WAL, in-memory copies)."""

from __future__ import annotations

from pathlib import Path

import pytest
from store_contract import T0, OpenStore, StoreContract, incident, record

from broadcaster.model import PostKind, PostState
from broadcaster.store import Store


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
