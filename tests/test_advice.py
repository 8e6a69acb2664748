"""Warnings for ops (exit 0): what would make a post say less than customers need."""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from broadcaster.advice import incident_advice
from broadcaster.app import default_rule
from broadcaster.cli import main
from broadcaster.config import (
    DEFAULT_CADENCE,
    CadenceConfig,
    ChannelConfig,
    load_config,
    parse_duration,
)
from broadcaster.editor import Editor
from broadcaster.model import Incident, Localized
from broadcaster.render import Renderer
from broadcaster.store import Store

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2017, 11, 9, 8, 30, tzinfo=PARIS)
CADENCE = CadenceConfig(
    every={s: {k: parse_duration(v) for k, v in sev.items()} for s, sev in DEFAULT_CADENCE.items()}
)
BILINGUAL = {
    "x-en": ChannelConfig(name="x-en", platform="x", language="en"),
    "x-fr": ChannelConfig(name="x-fr", platform="x", language="fr"),
}
GOOD = Incident(
    id="sbg-power",
    title=Localized({"en": "Power outage in SBG", "fr": "Coupure électrique à SBG"}),
    status="identified",
    severity="critical",
    started_at=datetime(2017, 11, 9, 7, 23, tzinfo=PARIS),
    cause=Localized({"en": "Both feeds lost", "fr": "Les deux arrivées perdues"}),
    url="https://status.example.com/sbg",
    next_update_at=NOW + timedelta(minutes=15),
)


def warnings(incident: Incident, channels: dict[str, ChannelConfig] = BILINGUAL) -> list[str]:
    return [str(a) for a in incident_advice(incident, channels, CADENCE, NOW)]


def test_a_complete_incident_gets_no_warning() -> None:
    assert warnings(GOOD) == []


def test_identified_without_a_cause() -> None:
    assert warnings(GOOD.with_changes({"cause": None})) == [
        "incident 'sbg-power' field 'cause': status is identified but no cause is given: "
        "say what it is"
    ]


@pytest.mark.parametrize("severity", ["major", "critical"])
def test_a_serious_incident_without_a_link(severity: str) -> None:
    found = warnings(GOOD.with_changes({"url": None, "severity": severity}))
    assert found == [
        f"incident 'sbg-power' field 'url': a {severity} incident has no url: "
        "give readers a page to follow"
    ]
    assert warnings(GOOD.with_changes({"url": None, "severity": "minor"})) == []


def test_a_promise_further_than_twice_the_cadence() -> None:
    # identified + critical: every 15 minutes; 30 minutes away is still fine, 45 is not
    assert warnings(GOOD.with_changes({"next_update_at": NOW + timedelta(minutes=30)})) == []
    (found,) = warnings(GOOD.with_changes({"next_update_at": NOW + timedelta(minutes=45)}))
    assert found.startswith("incident 'sbg-power' field 'next_update_at': the next update is 45")
    assert "twice the cadence (15 min)" in found


def test_one_text_for_every_language_on_a_bilingual_incident() -> None:
    plain = GOOD.with_changes({"message": "Technicians are on site."})
    (found,) = warnings(plain)
    assert found.startswith("incident 'sbg-power' field 'message': one text for every language")
    assert "posted as is in en, fr" in found
    # channels in one language only: a plain string is what they want
    assert warnings(plain, {"x-en": BILINGUAL["x-en"]}) == []


def test_a_resolved_incident_is_left_alone() -> None:
    done = GOOD.with_changes({"status": "resolved", "cause": None, "url": None})
    assert warnings(done) == []


# -- where ops see them ----------------------------------------------------------------------


def test_check_lists_warnings_and_still_exits_0(site: Path, capsys) -> None:
    state = site / "examples" / "state.toml"
    text = state.read_text()
    text = re.sub(r"\ncause = \{[^\n]*\n", "\n", text, count=1)  # identified, cause removed
    state.write_text(text.replace("message = { en =", 'message = "One text" # { en =', 1))
    assert (
        main(["check", "--dry-run", "--config", str(site / "config.toml"), "--format", "json"]) == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["problems"] == []
    assert any(
        w.startswith("incident 'sbg-power-2017-11-09' field 'cause'") for w in report["warnings"]
    )
    assert any(
        w.startswith("incident 'sbg-power-2017-11-09' field 'message'") for w in report["warnings"]
    )
    assert main(["check", "--dry-run", "--config", str(site / "config.toml")]) == 0
    err = capsys.readouterr().err
    assert "warning: incident 'sbg-power-2017-11-09' field 'cause'" in err


def test_the_daemon_logs_each_warning_once_per_revision(
    site: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = load_config(site / "config.toml")
    store = Store(":memory:")
    rules = {name: default_rule(c) for name, c in config.channels.items()}
    editor = Editor(store, Renderer(config.templates_dir, config.timezone), config, rules)
    caplog.set_level(logging.WARNING, logger="broadcaster.editor")

    def cause_warnings() -> int:
        return sum("field 'cause'" in r.getMessage() for r in caplog.records)

    editor.ingest([GOOD.with_changes({"cause": None})], NOW)
    editor.run(NOW)
    editor.run(NOW + timedelta(minutes=20))  # a reminder, same revision: not logged again
    assert cause_warnings() == 1
    changed = GOOD.with_changes({"cause": None, "message": {"en": "New", "fr": "Nouveau"}})
    editor.ingest([changed], NOW + timedelta(minutes=25))
    editor.run(NOW + timedelta(minutes=25))
    assert cause_warnings() == 2, "a new revision that still lacks a cause: said again"
    store.close()
