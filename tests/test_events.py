"""Events from queues: the newest word on an incident wins, bad input is refused whole."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import ROOT, InProcessDryRun, opening

from broadcaster.daemon import Daemon
from broadcaster.events import EventError, decode


@pytest.fixture
def daemon(tmp_path: Path):
    config = f"""
[broadcaster]
state_file = "state.toml"
templates_dir = "{ROOT / "message_templates"}"
[channels.x-en]
platform = "dryrun"
language = "en"
"""
    run = InProcessDryRun(tmp_path, config)
    yield run.start()
    run.stop()


def status(daemon: Daemon) -> str:
    assert daemon.app is not None
    snapshot = daemon.app.store.snapshot("sbg-power")
    assert snapshot is not None
    return snapshot.incident.status


def test_an_event_repeating_what_its_source_said_earlier_still_applies(daemon: Daemon) -> None:
    daemon.submit(opening(status="identified"), origin="http", source="http")
    daemon.submit({"id": "sbg-power", "status": "monitoring"}, origin="spool", source="spool")
    daemon.submit({"id": "sbg-power", "status": "identified"}, origin="http", source="http")
    assert status(daemon) == "identified"
    daemon.submit({"id": "sbg-power", "status": "resolved"}, origin="http", source="http")
    assert status(daemon) == "resolved"


def test_an_event_with_text_no_platform_can_take_is_refused(daemon: Daemon) -> None:
    with pytest.raises(EventError, match="lone surrogate"):
        decode('{"id": "sbg-power", "message": "bad \\ud800"}', origin="http")
    daemon.submit(opening(), origin="http", source="http")  # the service goes on
    assert status(daemon) == "investigating"


def test_concurrent_polls_apply_each_spooled_event_once(tmp_path: Path) -> None:
    """The scheduled poll, start() and reload() all poll: never the same event twice.
    (Polled only when the test says so: the files below are written in place.)"""
    import json
    import threading

    config = f"""
[broadcaster]
state_file = "state.toml"
templates_dir = "{ROOT / "message_templates"}"
watch = "poll"
poll_interval = "1h"
[channels.x-en]
platform = "dryrun"
language = "en"
[intake.spool]
directory = "spool"
"""
    run = InProcessDryRun(tmp_path, config)
    d = run.start()
    try:
        incoming = tmp_path / "spool" / "incoming"
        events = [opening()] + [
            {
                "id": "sbg-power",
                "status": ("identified", "monitoring")[i % 2],
                "message": f"step {i}",
            }
            for i in range(1, 60)
        ]
        for i, event in enumerate(events):
            (incoming / f"{i:04d}.json").write_text(json.dumps(event))
        threads = [threading.Thread(target=d.poll_sources) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        while any(incoming.iterdir()):
            d.poll_sources()
        assert d.app is not None
        snapshot = d.app.store.snapshot("sbg-power")
        assert snapshot is not None and snapshot.revision == len(events)
    finally:
        run.stop()
