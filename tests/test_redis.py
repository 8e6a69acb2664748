"""The Redis Streams source, end to end through the daemon, on a real redis-server."""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from redis_server import RedisServer
from support import InProcessDryRun, dry_run_config, opening, wait_for

from broadcaster.sources.redis import RedisStreamSource

TITLE = "Power outage in Strasbourg"
STREAM = "broadcaster:events"  # the default: no stream key in the config below
DEAD = f"{STREAM}:dead"
GROUP = "broadcaster"


def config_text(url: str, consumer: str, claim_idle: str = "30s") -> str:
    return dry_run_config(
        f'[intake.redis]\nurl = "{url}"\nconsumer = "{consumer}"\nclaim_idle = "{claim_idle}"'
    )


class Harness(InProcessDryRun):
    """A dry-run daemon, in process, reading the stream as one consumer of the group."""

    def __init__(
        self,
        tmp: Path,
        server: RedisServer,
        consumer: str = "broadcaster-1",
        claim_idle: str = "30s",
    ) -> None:
        super().__init__(tmp, config_text(server.url, consumer, claim_idle))
        self.server = server
        self.redis = server.client()

    @property
    def source(self) -> RedisStreamSource:
        assert self.daemon is not None and self.daemon.app is not None
        (source,) = [s for s in self.daemon.app.sources if isinstance(s, RedisStreamSource)]
        return source

    def push(self, event: dict[str, Any] | str | None = None, **fields: Any) -> bytes:
        if event is not None:
            fields["event"] = event if isinstance(event, str) else json.dumps(event)
        return self.redis.xadd(STREAM, fields)

    def pending(self) -> int:
        return int(self.redis.xpending(STREAM, GROUP)["pending"])

    def snapshot(self, incident_id: str = "sbg-power"):
        assert self.daemon is not None and self.daemon.app is not None
        return self.daemon.app.store.snapshot(incident_id)


@pytest.fixture
def redis_server(tmp_path: Path):
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop(kill=True)


@pytest.fixture
def harness(tmp_path: Path, redis_server: RedisServer):
    h = Harness(tmp_path, redis_server)
    yield h
    h.stop()
    h.redis.close()


def test_an_event_is_posted_and_acknowledged(harness: Harness) -> None:
    harness.start()
    harness.push(opening())
    (post,) = harness.wait_posts(1)
    assert post["kind"] == "opened" and post["incident_id"] == "sbg-power"
    assert TITLE in post["text"] and "Power lost" in post["text"]
    wait_for(lambda: harness.pending() == 0, "the entry to be acknowledged")
    assert harness.redis.xlen(DEAD) == 0


def test_an_entry_stays_pending_until_its_event_is_acknowledged(
    redis_server: RedisServer,
) -> None:
    client = redis_server.client()
    source = RedisStreamSource(redis_server.url, STREAM, GROUP, "c1")
    try:
        entry_id = client.xadd(STREAM, {"event": json.dumps(opening())})
        batch = source.poll()
        assert batch is not None
        (event,) = batch.events
        assert event.data["id"] == "sbg-power" and entry_id.decode() in event.origin
        assert client.xpending(STREAM, GROUP)["pending"] == 1, "not before the store committed"
        # Neither acknowledged nor refused by the next poll: the daemon failed mid-batch, so
        # the entry is handed over again rather than forgotten.
        again = source.poll()
        assert again is not None and [e.origin for e in again.events] == [event.origin]
        again.events[0].ack()
        assert client.xpending(STREAM, GROUP)["pending"] == 0
        assert source.poll() is None
    finally:
        source.close()
        client.close()


def test_bad_events_go_to_the_dead_letter_stream_with_the_reason(harness: Harness) -> None:
    harness.push(opening())
    no_event = harness.push(evnt=json.dumps(opening()))
    bad_json = harness.push('{"id": "sbg-power", "status": ')
    refused = harness.push({"id": "sbg-power", "status": "fixed"})
    missing = harness.push({"id": "other", "status": "investigating"})
    harness.start()
    wait_for(lambda: harness.redis.xlen(DEAD) == 4, "four dead letters")
    dead = {fields[b"id"]: fields for _, fields in harness.redis.xrange(DEAD)}
    assert set(dead) == {no_event, bad_json, refused, missing}
    assert b"no 'event' field" in dead[no_event][b"error"]
    assert json.loads(dead[no_event][b"event"])["evnt"], "the original entry is kept"
    assert b"invalid JSON" in dead[bad_json][b"error"]
    assert dead[bad_json][b"event"] == b'{"id": "sbg-power", "status": '
    assert b"field 'status'" in dead[refused][b"error"] and b"'fixed'" in dead[refused][b"error"]
    assert json.loads(dead[refused][b"event"]) == {"id": "sbg-power", "status": "fixed"}
    assert b"field 'title'" in dead[missing][b"error"]
    for entry_id, fields in dead.items():
        assert entry_id in fields[b"error"], "the reason names the entry"
    wait_for(lambda: harness.pending() == 0, "every entry to be acknowledged")
    (post,) = harness.wait_posts(1)
    assert post["kind"] == "opened" and "Power lost" in post["text"]
    assert harness.snapshot().incident.status == "investigating"
    assert harness.snapshot("other") is None


def test_a_partial_update_posts_an_update_with_what_the_first_event_said(
    harness: Harness,
) -> None:
    harness.start()
    harness.push(opening())
    (opened,) = harness.wait_posts(1)
    harness.push({"id": "sbg-power", "status": "identified", "message": "Both feeds lost"})
    update = harness.wait_posts(2)[1]
    assert update["kind"] == "update"
    assert f"Incident: {TITLE}" in update["text"]  # identified, no cause yet
    assert "Cause identified" not in update["text"] and "Both feeds lost" in update["text"]
    assert update["reply_to"] == opened["idempotency_key"]
    wait_for(lambda: harness.pending() == 0, "both entries to be acknowledged")


def test_events_for_one_incident_apply_in_stream_order(harness: Harness) -> None:
    harness.push(opening(message="step 1"))
    harness.push({"id": "sbg-power", "status": "identified", "message": "step 2"})
    harness.push({"id": "sbg-power", "cause": "A feed failed", "message": "step 3"})
    harness.push({"id": "sbg-power", "status": "monitoring", "message": "step 4"})
    harness.push({"id": "sbg-power", "message": "step 5"})
    harness.start()  # all five wait in the stream: the first poll takes them together
    wait_for(lambda: harness.pending() == 0 and harness.snapshot(), "all five applied")
    snapshot = harness.snapshot()
    assert snapshot.revision == 5, "each event applied once, none twice"
    assert snapshot.incident.status == "monitoring" and snapshot.incident.cause is not None
    assert "step 5" in str(snapshot.incident.message)
    (post,) = harness.wait_posts(1)
    assert post["kind"] == "opened" and "step 5" in post["text"]


def test_a_redis_restart_loses_nothing_and_doubles_nothing(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="broadcaster.sources.redis")
    harness.start()
    harness.push(opening())
    harness.wait_posts(1)
    wait_for(lambda: harness.pending() == 0, "the first entry to be acknowledged")

    harness.server.stop()
    source = harness.source
    wait_for(lambda: source.last_error is not None, "the outage to be noticed")
    assert "127.0.0.1" in str(source.last_error)
    started = time.monotonic()
    assert source.poll() is None  # the daemon's own polls run beside this one
    assert time.monotonic() - started < 0.5, "a poll must stay short while Redis is away"

    harness.server.start()  # same port, same data directory: the stream and group survive
    wait_for(lambda: source.last_error is None, "the source to reconnect", timeout=10)
    harness.push({"id": "sbg-power", "status": "identified", "message": "Both feeds lost"})
    posts = harness.wait_posts(2)
    assert [p["kind"] for p in posts] == ["opened", "update"]
    wait_for(lambda: harness.pending() == 0, "the second entry to be acknowledged")
    assert harness.snapshot().revision == 2
    assert harness.daemon is not None and harness.daemon.app is not None
    harness.daemon.plan()
    assert len(harness.daemon.app.store.posts()) == 2, "nothing planned twice"
    outages = [
        r
        for r in caplog.records
        if r.name == "broadcaster.sources.redis" and r.levelno >= logging.WARNING
    ]
    assert len(outages) == 1, "the outage is logged once, not at every poll"
    assert any("reachable again" in r.getMessage() for r in caplog.records)


def test_the_daemon_starts_and_waits_while_redis_is_down(harness: Harness) -> None:
    harness.redis.close()
    harness.server.stop()
    harness.start()
    assert harness.source.last_error is not None
    harness.server.start()
    harness.redis = harness.server.client()
    harness.push(opening())
    (post,) = harness.wait_posts(1, timeout=10)
    assert post["kind"] == "opened"
    wait_for(lambda: harness.pending() == 0, "the entry to be acknowledged")
    assert harness.source.last_error is None


def test_an_acknowledgement_lost_in_an_outage_does_not_apply_the_event_twice(
    redis_server: RedisServer,
) -> None:
    client = redis_server.client()
    source = RedisStreamSource(
        redis_server.url, STREAM, GROUP, "c1", backoff_initial=timedelta(milliseconds=20)
    )
    try:
        client.xadd(STREAM, {"event": json.dumps(opening())})
        refused_id = client.xadd(STREAM, {"event": json.dumps({"id": "x", "status": "no"})})
        batch = source.poll()
        assert batch is not None
        applied, refused = batch.events
        redis_server.stop()
        applied.ack()  # the store committed it, but the XACK cannot reach Redis
        refused.reject("refused: field 'status'")  # nor can the dead letter
        assert source.last_error is not None
        redis_server.start()
        client = redis_server.client()
        assert client.xpending(STREAM, GROUP)["pending"] == 2, "both survived the restart"
        batches = []
        deadline = time.monotonic() + 5
        while client.xpending(STREAM, GROUP)["pending"] == 2 and time.monotonic() < deadline:
            batch = source.poll()
            if batch is not None:
                batches.append(batch)
        # The applied one is only acknowledged; the refused one is handed over again.
        redelivered = [e.origin for b in batches for e in b.events]
        assert redelivered == [refused.origin]
        assert refused_id.decode() in refused.origin
        assert client.xpending(STREAM, GROUP)["pending"] == 1
        batches[0].events[0].reject("refused again: field 'status'")
        assert client.xpending(STREAM, GROUP)["pending"] == 0
        assert client.xlen(DEAD) == 1
    finally:
        source.close()
        client.close()


def test_entries_left_pending_by_a_killed_consumer_are_taken_over_in_order(
    tmp_path: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = redis_server.client()
    client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    # Long enough that B's start (slow on a loaded machine) comes before A's entries are
    # claimable, so B is seen waiting for them first.
    harness = Harness(tmp_path, redis_server, consumer="B", claim_idle="2s")
    harness.push(opening())
    harness.push({"id": "sbg-power", "status": "identified", "message": "step 2"})
    # Consumer A reads both, then is killed before it acknowledges anything.
    read = client.xreadgroup(GROUP, "A", {STREAM: ">"}, count=10)
    assert len(read[0][1]) == 2
    # Newer than what A held: it must not overtake it (alone it would even be refused, as
    # the incident would not exist yet).
    harness.push({"id": "sbg-power", "status": "monitoring", "message": "step 3"})
    try:
        harness.start()
        assert "pending with A" in str(harness.source.last_error), "waiting, and saying why"
        wait_for(lambda: harness.pending() == 0, "the entries to be applied and acknowledged", 15)
        assert harness.source.last_error is None
        snapshot = harness.snapshot()
        assert snapshot.revision == 3, "each event applied exactly once"
        assert snapshot.incident.status == "monitoring"
        assert harness.redis.xlen(DEAD) == 0
        posts = harness.wait_posts(1)
        keys = [p["idempotency_key"] for p in posts]
        assert len(keys) == len(set(keys))
    finally:
        harness.stop()
        client.close()
        harness.redis.close()


def test_a_restarted_consumer_applies_its_own_pending_entries_at_once(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    client = redis_server.client()
    client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    harness = Harness(tmp_path, redis_server, consumer="A")
    harness.push(opening())
    client.xreadgroup(GROUP, "A", {STREAM: ">"}, count=10)  # read, then killed: never acked
    harness.push({"id": "sbg-power", "status": "identified", "message": "step 2"})
    try:
        harness.start()  # A again, with the default 30 s claim idle time: no waiting for it
        wait_for(lambda: harness.pending() == 0, "the pending entry to be applied", timeout=3)
        assert harness.snapshot().revision == 2
        assert harness.snapshot().incident.status == "identified"
    finally:
        harness.stop()
        client.close()
        harness.redis.close()
