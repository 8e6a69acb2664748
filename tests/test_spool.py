"""The spool directory source, end to end through the daemon, on a real directory."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from support import InProcessDryRun, dry_run_config, opening, wait_for

from broadcaster.sources.spool import SpoolSource
from broadcaster.store import StoreUnavailable

TITLE = "Power outage in Strasbourg"


class Harness(InProcessDryRun):
    """A dry-run daemon, in process, fed by a spool directory."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp, dry_run_config('[intake.spool]\ndirectory = "spool"'))
        self.spool = tmp / "spool"
        self.incoming = self.spool / "incoming"
        self.done = self.spool / "done"
        self.rejected = self.spool / "rejected"

    def drop(self, name: str, event: dict[str, Any] | str) -> Path:
        """Write as a well-behaved producer does: a temporary name, then an atomic rename."""
        self.incoming.mkdir(parents=True, exist_ok=True)
        text = event if isinstance(event, str) else json.dumps(event)
        part = self.incoming / f".{name}.part"
        part.write_text(text)
        path = self.incoming / name
        part.rename(path)
        return path

    def names(self, directory: Path) -> list[str]:
        return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


@pytest.fixture
def spool(tmp_path: Path):
    harness = Harness(tmp_path)
    yield harness
    harness.stop()


def test_a_dropped_event_is_posted_and_its_file_moved_to_done(spool: Harness) -> None:
    spool.start()
    for directory in (spool.incoming, spool.done, spool.rejected):
        assert directory.is_dir(), "created at start"
    spool.drop("0001.json", opening())
    (post,) = spool.wait_posts(1)
    assert post["kind"] == "opened" and post["incident_id"] == "sbg-power"
    assert TITLE in post["text"] and "Power lost" in post["text"]
    wait_for(lambda: spool.names(spool.done) == ["0001.json"], "the file to move to done/")
    assert spool.names(spool.incoming) == [] and spool.names(spool.rejected) == []


def test_a_file_leaves_incoming_only_when_its_event_is_acknowledged(tmp_path: Path) -> None:
    source = SpoolSource(tmp_path / "spool")
    incoming = tmp_path / "spool" / "incoming"
    (incoming / "0001.json").write_text(json.dumps(opening()))
    batch = source.poll()
    assert batch is not None
    (event,) = batch.events
    assert event.data["id"] == "sbg-power" and event.origin == str(incoming / "0001.json")
    assert (incoming / "0001.json").exists(), "not before the store committed it"
    # A daemon that died before committing: the next one is handed the same file again.
    again = SpoolSource(tmp_path / "spool").poll()
    assert again is not None and again.events[0].data == event.data
    event.ack()
    assert not (incoming / "0001.json").exists()
    assert (tmp_path / "spool" / "done" / "0001.json").exists()
    assert source.poll() is None


def test_one_poll_takes_a_bounded_number_of_events(tmp_path: Path) -> None:
    source = SpoolSource(tmp_path / "spool", batch_size=100)
    incoming = tmp_path / "spool" / "incoming"
    for i in range(250):
        (incoming / f"{i:04d}.json").write_text(json.dumps(opening(f"inc-{i:04d}")))
    batch = source.poll()
    assert batch is not None
    assert [e.data["id"] for e in batch.events] == [f"inc-{i:04d}" for i in range(100)]


def test_bad_events_are_rejected_with_a_reason_naming_the_field(spool: Harness) -> None:
    spool.drop("0001.json", opening())
    spool.drop("0002.json", {"id": "sbg-power", "status": "fixed"})
    spool.drop("0003.json", '{"id": "sbg-power", "status": ')
    spool.drop("0004.json", {"status": "identified"})
    spool.drop("0005.json", {"id": "other", "status": "investigating"})
    spool.drop("0006.json", "[1, 2]")
    spool.start()
    wait_for(lambda: len(spool.names(spool.rejected)) == 10, "five rejected files and reasons")
    assert spool.names(spool.done) == ["0001.json"]
    assert spool.names(spool.incoming) == []
    reasons = {
        name: (spool.rejected / f"{name}.error").read_text()
        for name in ("0002.json", "0003.json", "0004.json", "0005.json", "0006.json")
    }
    assert "field 'status'" in reasons["0002.json"] and "'fixed'" in reasons["0002.json"]
    assert "invalid JSON" in reasons["0003.json"]
    assert "field 'id'" in reasons["0004.json"]
    assert "field 'title'" in reasons["0005.json"]
    assert "one JSON object" in reasons["0006.json"]
    for name, reason in reasons.items():
        assert str(spool.incoming / name) in reason, "the reason names the file"
    # The refused events changed nothing: one incident, as the first event described it.
    (post,) = spool.wait_posts(1)
    assert post["kind"] == "opened" and "Power lost" in post["text"]
    assert spool.daemon is not None and spool.daemon.app is not None
    snapshot = spool.daemon.app.store.snapshot("sbg-power")
    assert snapshot is not None and snapshot.incident.status == "investigating"
    assert spool.daemon.app.store.snapshot("other") is None


def test_a_partial_update_posts_an_update_with_what_the_first_event_said(spool: Harness) -> None:
    spool.start()
    spool.drop("0001.json", opening())
    (opened,) = spool.wait_posts(1)
    spool.drop(
        "0002.json", {"id": "sbg-power", "status": "identified", "message": "Both feeds lost"}
    )
    update = spool.wait_posts(2)[1]
    assert update["kind"] == "update"
    assert f"Incident: {TITLE}" in update["text"]  # identified, no cause yet
    assert "Cause identified" not in update["text"] and "Both feeds lost" in update["text"]
    assert update["reply_to"] == opened["idempotency_key"]
    assert spool.names(spool.done) == ["0001.json", "0002.json"]


def test_events_for_one_incident_apply_in_name_order(spool: Harness) -> None:
    steps = [
        ("0001.json", opening(message="step 1")),
        ("0002.json", {"id": "sbg-power", "status": "identified", "message": "step 2"}),
        ("0003.json", {"id": "sbg-power", "cause": "A feed failed", "message": "step 3"}),
        ("0004.json", {"id": "sbg-power", "status": "monitoring", "message": "step 4"}),
        ("0005.json", {"id": "sbg-power", "message": "step 5"}),
    ]
    for name, event in reversed(steps):  # written last to first: name order, not age, rules
        spool.drop(name, event)
    spool.start()  # all five are in incoming: the first poll takes them together
    wait_for(lambda: len(spool.names(spool.done)) == 5, "all five files in done/")
    assert spool.daemon is not None and spool.daemon.app is not None
    snapshot = spool.daemon.app.store.snapshot("sbg-power")
    assert snapshot is not None
    incident = snapshot.incident
    assert incident.status == "monitoring" and incident.cause is not None
    assert incident.message is not None and "step 5" in str(incident.message)
    (post,) = spool.wait_posts(1)
    assert post["kind"] == "opened" and "step 5" in post["text"]


def test_files_being_written_are_ignored_until_renamed_to_json(spool: Harness) -> None:
    spool.incoming.mkdir(parents=True)
    writing = {
        ".0001.json": opening(),
        "0001.json.tmp": opening(),
        "0001.json.part": opening(),
        "0001.txt": opening(),
    }
    for name, event in writing.items():
        (spool.incoming / name).write_text(json.dumps(event))
    spool.start()
    # A complete file sorted after them: once it is done, the others were seen and left alone.
    spool.drop("zzzz.json", opening("sentinel"))
    wait_for(lambda: spool.names(spool.done) == ["zzzz.json"], "the sentinel to be applied")
    assert spool.names(spool.incoming) == sorted(writing)
    assert [p["incident_id"] for p in spool.wait_posts(1)] == ["sentinel"]
    (spool.incoming / "0001.json.part").rename(spool.incoming / "0001.json")
    posts = spool.wait_posts(2)
    assert [p["incident_id"] for p in posts] == ["sentinel", "sbg-power"]
    wait_for(lambda: "0001.json" in spool.names(spool.done), "0001.json to be applied")


def test_a_crash_between_commit_and_move_reapplies_the_event_harmlessly(spool: Harness) -> None:
    daemon = spool.start()
    spool.drop("0001.json", opening())
    spool.wait_posts(1)
    spool.drop("0002.json", {"id": "sbg-power", "status": "identified", "message": "Both lost"})
    spool.wait_posts(2)
    wait_for(lambda: len(spool.names(spool.done)) == 2, "both files in done/")
    assert daemon.app is not None
    recorded = len(daemon.app.store.posts())
    revision = daemon.app.store.snapshot("sbg-power").revision  # type: ignore[union-attr]
    spool.stop()
    # What a crash after the store's commit but before the rename leaves behind.
    shutil.copy(spool.done / "0002.json", spool.incoming / "0002.json")

    daemon = spool.start()
    wait_for(
        lambda: any(n.startswith("0002.") and n != "0002.json" for n in spool.names(spool.done)),
        "the re-applied file in done/, beside the first copy",
    )
    assert spool.names(spool.incoming) == []
    assert daemon.app is not None
    daemon.plan()
    assert len(daemon.app.store.posts()) == recorded, "the planner posted something twice"
    assert daemon.app.store.snapshot("sbg-power").revision == revision  # type: ignore[union-attr]
    spool.drop("0003.json", {"id": "sbg-power", "status": "monitoring", "message": "Back"})
    posts = spool.wait_posts(3)
    assert [p["kind"] for p in posts] == ["opened", "update", "update"]
    keys = [p["idempotency_key"] for p in posts]
    assert len(keys) == len(set(keys))


def test_a_poll_whose_commit_fails_acknowledges_none_of_its_events(
    spool: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A poll's events share one transaction: if it cannot commit, every file stays in
    incoming/ and is applied, in order, once the store is back."""
    daemon = spool.start()
    assert daemon.app is not None
    store = daemon.app.store
    batch = store.batch
    failures: list[int] = []

    @contextmanager
    def failing_commit() -> Iterator[None]:
        with batch():
            yield
            failures.append(1)
            raise StoreUnavailable("the database went away before the commit")

    monkeypatch.setattr(store, "batch", failing_commit)
    spool.drop("0001.json", opening())
    spool.drop("0002.json", {"id": "sbg-power", "status": "identified", "cause": "A feed"})
    wait_for(lambda: len(failures) >= 2, "two polls failing to commit")
    assert spool.names(spool.incoming) == ["0001.json", "0002.json"]
    assert spool.names(spool.done) == [] and store.snapshot("sbg-power") is None
    monkeypatch.setattr(store, "batch", batch)  # the store is back
    wait_for(lambda: spool.names(spool.done) == ["0001.json", "0002.json"], "both files done")
    snapshot = store.snapshot("sbg-power")
    assert snapshot is not None and snapshot.incident.status == "identified"
