"""Which store a config names: SQLite in data_dir by default, PostgreSQL with [store] url;
its password never shown; `broadcaster migrate` and `status` on either."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from pg_server import PASSWORD
from support import X_EN, config_toml

from broadcaster.app import open_store, store_location
from broadcaster.cli import main
from broadcaster.config import ConfigError, load_config
from broadcaster.logs import redact
from broadcaster.store.postgres import MIGRATIONS, PostgresStore
from broadcaster.store.sqlite import MIGRATIONS as SQLITE_MIGRATIONS


def write(tmp_path: Path, *tables: str) -> Path:
    (tmp_path / "state.toml").write_text("")
    path = tmp_path / "config.toml"
    path.write_text(config_toml(X_EN, *tables))
    return path


def test_without_a_store_table_the_store_is_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    config = load_config(write(tmp_path))
    assert config.store.url is None
    assert store_location(config, dry_run=False) == str(tmp_path / "data/broadcaster.sqlite3")


def test_the_store_password_comes_from_the_environment_and_is_never_shown(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGPW", PASSWORD)
    url = postgres_url.replace(PASSWORD, "${PGPW}") + "?sslmode=disable"
    config = load_config(write(tmp_path, f'[store]\nurl = "{url}"\nlease_ttl = "5s"\n'))
    assert config.store.lease_ttl.total_seconds() == 5
    assert PASSWORD not in store_location(config, dry_run=False)
    assert PASSWORD not in repr(config.store) and redact(f"url {url}") == f"url {url}"
    assert PASSWORD not in redact(config.store.url.reveal())  # type: ignore[union-attr]
    store = open_store(config, dry_run=False)
    try:
        assert isinstance(store, PostgresStore)
    finally:
        store.close()


def test_a_store_url_that_is_not_postgresql_is_refused_with_file_line_and_key(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, '[store]\nurl = "mysql://x@y/z"\n')
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value).startswith(f"{path}:")
    assert "store.url: expected a postgresql:// URL" in str(error.value)


def test_migrate_brings_either_store_up_to_date(
    tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sqlite = write(tmp_path)
    assert main(["migrate", "--config", str(sqlite), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["schema_version"] == len(SQLITE_MIGRATIONS)
    pg = tmp_path / "pg"
    pg.mkdir()
    path = write(pg, f'[store]\nurl = "{postgres_url}"\n')
    assert main(["migrate", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.endswith(f"schema version {len(MIGRATIONS)}\n") and PASSWORD not in out


def test_status_lists_instances_and_who_delivers_each_channel(
    tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from datetime import timedelta

    path = write(tmp_path, f'[store]\nurl = "{postgres_url}"\n')
    store = PostgresStore(postgres_url, pool_size=1)
    store.heartbeat("eu-1", timedelta(seconds=15))
    store.acquire_lease("x-en", "eu-1", timedelta(seconds=15))
    store.close()
    assert main(["status", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "instances:\n  eu-1: alive until" in out
    assert "  x-en: eu-1 until" in out


def test_a_newer_sqlite_schema_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    import sqlite3

    path = write(tmp_path)
    (tmp_path / "data").mkdir()
    db = sqlite3.connect(tmp_path / "data/broadcaster.sqlite3")
    db.execute(f"PRAGMA user_version = {len(SQLITE_MIGRATIONS) + 1}")
    db.close()
    with caplog.at_level(logging.ERROR):
        assert main(["migrate", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"error: {tmp_path / 'data/broadcaster.sqlite3'}: the store's schema is version "
        f"{len(SQLITE_MIGRATIONS) + 1}, newer than this broadcaster knows "
        f"({len(SQLITE_MIGRATIONS)}): upgrade broadcaster\n"
    )
