"""The SQLite store: the store contract, plus what only SQLite does (WAL, full sync)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from store_contract import OpenStore, StoreContract

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
