"""The PostgreSQL store: the one contract suite, then what only a shared store does (leases,
fencing tokens, instances taking turns, migrations), against a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
from pg_server import PostgresServer
from store_contract import T0, OpenStore, StoreContract, incident, record

from broadcaster.model import PostKind, PostState
from broadcaster.store import DataStore, LeaseLost, StoreError
from broadcaster.store.postgres import MIGRATIONS, PostgresStore


class TestPostgresStore(StoreContract):
    @pytest.fixture
    def open_store(self, postgres_url: str) -> OpenStore:
        return lambda: PostgresStore(postgres_url, pool_size=2)


@pytest.fixture
def two(postgres_url: str) -> Iterator[tuple[DataStore, DataStore]]:
    """Two instances' stores on one database."""
    a, b = PostgresStore(postgres_url, pool_size=2), PostgresStore(postgres_url, pool_size=2)
    yield a, b
    a.close()
    b.close()


def test_the_same_description_applied_by_two_instances_makes_one_revision(
    two: tuple[DataStore, DataStore],
) -> None:
    a, b = two
    assert a.apply_incidents([incident(status="identified")], T0, source="file") == ["sbg"]
    assert b.apply_incidents([incident(status="identified")], T0, source="file") == []
    assert b.snapshot("sbg").revision == 1  # type: ignore[union-attr]


def test_one_holder_per_channel_until_its_lease_runs_out(
    two: tuple[DataStore, DataStore],
) -> None:
    a, b = two
    held = a.acquire_lease("x-en", "a", timedelta(seconds=30))
    assert held is not None and held.holder == "a"
    assert b.acquire_lease("x-en", "b", timedelta(seconds=30)) is None
    renewed = a.acquire_lease("x-en", "a", timedelta(seconds=30))
    assert renewed is not None and renewed.token == held.token  # renewal keeps the token
    assert renewed.expires_at >= held.expires_at
    a.release_lease(renewed)
    taken = b.acquire_lease("x-en", "b", timedelta(seconds=30))
    assert taken is not None and taken.token == held.token + 1
    assert b.leases()["x-en"] == taken


def test_a_holder_that_lost_its_lease_can_mark_nothing(two: tuple[DataStore, DataStore]) -> None:
    a, b = two
    opened = record(a, PostKind.OPENED, 1)
    update = record(a, PostKind.UPDATE, 2, revision=2)
    old = a.acquire_lease("x-en", "a", timedelta(milliseconds=1))
    assert old is not None
    new = b.acquire_lease("x-en", "b", timedelta(seconds=30))
    while new is None:  # a's millisecond runs out
        new = b.acquire_lease("x-en", "b", timedelta(seconds=30))
    with pytest.raises(LeaseLost):
        a.mark_sending(opened.key(1), lease=old)
    assert b.mark_sending(opened.key(1), lease=new)
    for attempt in (
        lambda: a.mark_sent(opened.key(1), "1", None, T0, lease=old),
        lambda: a.mark_failed(update.key(1), "no", lease=old),
        lambda: a.retry_later(update.key(1), "no", T0, outcome_unknown=False, lease=old),
    ):
        with pytest.raises(LeaseLost):
            attempt()
    assert {p.key: p.state for p in b.posts()} == {
        opened.key(1): PostState.SENDING,
        update.key(1): PostState.PENDING,
    }
    assert b.post(opened.key(1)).attempts == 1  # type: ignore[union-attr]


def test_instances_report_their_heartbeat(two: tuple[DataStore, DataStore]) -> None:
    a, b = two
    a.heartbeat("eu-1", timedelta(seconds=15))
    b.heartbeat("us-1", timedelta(seconds=15))
    assert sorted(a.instances()) == ["eu-1", "us-1"]


def test_a_schema_newer_than_the_code_is_refused_in_one_line(postgres_url: str) -> None:
    PostgresStore(postgres_url, pool_size=1, display="db.example/broadcaster").close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (len(MIGRATIONS) + 1,))
    with pytest.raises(StoreError) as error:
        PostgresStore(postgres_url, pool_size=1, display="db.example/broadcaster")
    assert str(error.value) == (
        f"db.example/broadcaster: the store's schema is version {len(MIGRATIONS) + 1}, newer "
        f"than this broadcaster knows ({len(MIGRATIONS)}): upgrade broadcaster"
    )


def test_an_unreachable_database_is_a_one_line_error(postgres_server: PostgresServer) -> None:
    url = postgres_server.url("postgres").replace(str(postgres_server.port), "1")
    with pytest.raises(StoreError) as error:
        PostgresStore(url, pool_size=1, timeout=1, display="db.example")
    assert str(error.value).startswith("db.example: cannot open the store: ")
    assert "\n" not in str(error.value) and "s3cret" not in str(error.value)
