"""The SQLite store: the store contract, plus what only SQLite does (WAL, full sync)."""

from __future__ import annotations

import ast
import sqlite3
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from store_contract import T0, OpenStore, StoreContract, record

from broadcaster.model import PlannedPost, PostKind
from broadcaster.store import Store
from broadcaster.store.sqlite_schema import SCHEMA


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


def test_outside_the_store_only_openings_name_the_sqlite_store() -> None:
    # Everything else is typed against the contract, so another backend can take its place.
    package = Path(__file__).resolve().parents[1] / "broadcaster"
    misuse: list[str] = []
    for path in package.rglob("*.py"):
        if path.parent.name == "store":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
        imports_store = any(
            isinstance(node, ast.ImportFrom)
            and (node.module or "").endswith("store")
            and any(alias.name == "Store" for alias in node.names)
            for node in ast.walk(tree)
        )
        for node in ast.walk(tree):
            if (
                imports_store
                and isinstance(node, ast.Name)
                and node.id == "Store"
                and (id(node) not in called)
            ):
                misuse.append(f"{path.relative_to(package)}:{node.lineno}")
    assert misuse == [], "type these with DataStore (broadcaster/store/contract.py)"


def test_a_store_written_before_reopened_at_existed_opens_and_keeps_its_threads(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(SCHEMA)  # as written before schema versions were kept
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


def test_a_store_file_replaced_under_the_daemon_is_reported_lost(tmp_path: Path) -> None:
    path = tmp_path / "broadcaster.sqlite3"
    store = Store(path)
    try:
        assert store.lost() is None
        path.rename(tmp_path / "moved.sqlite3")
        path.write_bytes(b"")  # a fresh file at the same path: not the one written to
        assert "was replaced" in (store.lost() or "")
        path.unlink()
        assert "was deleted" in (store.lost() or "")
    finally:
        store.close()
    memory = Store(":memory:")
    assert memory.lost() is None
    memory.close()
