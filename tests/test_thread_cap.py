"""The thread cap (``max_parts``): a message that would become dozens of replies is refused
at every door, before anything is posted, with a one-line error naming the field and how
much shorter it must be; one that still reaches planning is never posted."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support import bilingual_opening, opening, wait_for
from test_http import Service, running

from broadcaster.cli import main

# About 1,900 characters: 8 parts or more on X (280), where the cap is 6.
LONG = "Feed A is back, feed B is not. " * 60


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    """The daemon with its HTTP intake and a spool directory."""
    with running(tmp_path, monkeypatch, extra='\n[intake.spool]\ndirectory = "spool"') as s:
        yield s


def test_an_event_over_the_cap_is_refused_by_http_and_the_spool_and_never_posted(
    service: Service,
) -> None:
    r = service.post(bilingual_opening("long-http", message=LONG))
    assert r.status == 422
    (error,) = r.json()["errors"]
    assert error["field"] == "message"
    assert "x-en" in error["message"] and "max_parts = 6" in error["message"]
    assert "shorter" in error["message"] and "\n" not in error["message"]

    incoming = service.tmp / "spool" / "incoming"
    (incoming / ".0001.json.part").write_text(
        json.dumps(bilingual_opening("long-spool", message=LONG))
    )
    (incoming / ".0001.json.part").rename(incoming / "0001.json")
    reason = wait_for(
        lambda: (
            (p := service.tmp / "spool" / "rejected" / "0001.json.error").exists() and p.read_text()
        ),
        "the spool file rejected with its reason",
    )
    assert "field 'message'" in reason and "shorter" in reason

    assert service.post(bilingual_opening("short")).status == 202
    service.wait_posts(2)
    assert {p["incident_id"] for p in service.posts()} == {"short"}
    assert service.daemon is not None and service.daemon.app is not None
    store = service.daemon.app.store
    assert store.snapshot("long-http") is None and store.snapshot("long-spool") is None


def test_a_state_file_over_the_cap_keeps_the_last_good_state_naming_file_line_and_field(
    service: Service,
) -> None:
    state = service.tmp / "state.toml"
    good = _state_entry("sbg-power", "Power lost on both feeds")
    state.write_text(good)
    service.wait_posts(2)
    state.write_text(good + _state_entry("rbx-network", LONG))
    line = state.read_text().splitlines().index(f'message = "{LONG}"') + 1
    source = service.daemon.app.sources[0] if service.daemon and service.daemon.app else None
    assert source is not None and source.name == "file"
    error = wait_for(lambda: source.last_error, "the state file refused")
    assert f"state.toml:{line}: incident 'rbx-network' field 'message': too long" in error
    assert "last good state" in error
    assert service.daemon is not None and service.daemon.app is not None
    assert service.daemon.app.store.snapshot("rbx-network") is None
    assert {p["incident_id"] for p in service.posts()} == {"sbg-power"}


def _state_entry(incident_id: str, message: str) -> str:
    event = opening(incident_id)
    return f"""
[[incidents]]
id = "{incident_id}"
title = "{event["title"]}"
status = "investigating"
severity = "critical"
started_at = {event["started_at"]}
message = "{message}"
"""


# -- check, preview, draft and the console ---------------------------------------------------


def test_check_preview_and_draft_refuse_a_message_over_the_cap(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(site / "config.toml")
    state = site / "examples" / "state.toml"
    before = state.read_text()
    sbg = "sbg-power-2017-11-09"
    options = ["--message", f"en={LONG}", "--message", "fr=Court", "--write"]
    code = main(["draft", sbg, "--config", config, *options])
    _, err = capsys.readouterr()
    assert code == 2
    assert f"draft {sbg}: incident '{sbg}' field 'message': too long" in err
    assert "shorter" in err and state.read_text() == before, "nothing written"

    lines = before.splitlines()
    at = next(i for i, text in enumerate(lines) if text.startswith("message = {"))
    lines[at] = f'message = {{ en = "{LONG}", fr = "Court" }}'
    state.write_text("\n".join(lines) + "\n")
    for command in (["check", "--dry-run"], ["preview"]):
        code = main([*command, "--config", config])
        _, err = capsys.readouterr()
        assert code == 2, command
        assert f"state.toml:{at + 1}: incident '{sbg}' field 'message': too long" in err, command
        assert "channels.x-en.max_parts = 6" in err and "shorter" in err


def test_the_console_refuses_to_save_a_message_over_the_cap(tmp_path: Path) -> None:
    import warnings

    from console_support import console_config, form_of, login

    from broadcaster.config import load_config
    from broadcaster.web.console import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    config = load_config(console_config(tmp_path))
    client = TestClient(create_app(config, config.console.require_token(config.path)))
    assert login(client).status_code == 303
    before = config.state_file.read_bytes()
    sbg = "sbg-power-2017-11-09"
    form = form_of(client.get(f"/incidents/{sbg}").text)
    form["message-en"] = LONG
    page = client.post(f"/incidents/{sbg}", data=form)
    assert 'data-testid="saved"' not in page.text
    assert "too long" in page.text and "shorter" in page.text
    assert config.state_file.read_bytes() == before


# -- planning: the last guard ------------------------------------------------------------------


def test_a_post_over_the_cap_that_reaches_planning_is_never_recorded(
    site: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from broadcaster.app import rehearsal
    from broadcaster.config import load_config
    from broadcaster.statefile import parse_incident

    config = load_config(site / "config.toml")
    now = datetime.now(UTC)
    incident = parse_incident(
        opening("long", message=LONG), origin="test", languages=config.languages()
    )
    store, editor = rehearsal(config, fresh=True)
    caplog.set_level(logging.ERROR, logger="broadcaster.editor")
    try:
        editor.ingest([incident], now)  # past every door, as a template edit could
        for _ in range(3):
            recorded, _ = editor.run(now)
            assert {r.post.channel for r in recorded}.isdisjoint({"x-en", "x-fr"})
        why = editor.unplannable[("long", "x-en")]
        assert "max_parts" in why and "message" in why and "shorter" in why
        logged = [r for r in caplog.records if "cannot post" in r.getMessage()]
        assert len(logged) == 2, "once per channel and revision (x-en, x-fr), not per plan"
        assert not [p for p in store.posts() if p.channel.startswith("x-")]
    finally:
        store.close()


def test_status_shows_an_incident_over_the_cap_as_cannot_be_posted(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from broadcaster.app import open_store
    from broadcaster.config import load_config
    from broadcaster.statefile import parse_incident

    config = load_config(site / "config.toml")
    store = open_store(config, dry_run=True)
    try:  # past every door, as an edited template or a lower max_parts could leave it
        incident = parse_incident(
            opening("long", message=LONG), origin="test", languages=config.languages()
        )
        store.apply_incidents([incident], datetime.now(UTC))
    finally:
        store.close()
    assert main(["status", "--dry-run", "--config", str(site / "config.toml")]) == 0
    out = capsys.readouterr().out
    assert "long (investigating, revision 1)\n    CANNOT BE POSTED: message: too long" in out
    assert "max_parts = 6" in out and "shorter" in out


def test_an_event_over_the_cap_is_dead_lettered_by_redis(tmp_path: Path) -> None:
    from redis_server import RedisServer
    from test_redis import DEAD
    from test_redis import Harness as RedisHarness

    server = RedisServer(tmp_path / "redis")
    server.start()
    queue = RedisHarness(tmp_path, server)
    try:
        long = queue.push(opening("long", message=LONG))
        queue.push(opening())
        queue.start()
        wait_for(lambda: queue.redis.xlen(DEAD) == 1, "one dead letter")
        ((_, fields),) = queue.redis.xrange(DEAD)
        assert fields[b"id"] == long
        assert b"field 'message': too long" in fields[b"error"] and b"shorter" in fields[b"error"]
        wait_for(lambda: queue.pending() == 0, "every entry settled")
        assert queue.snapshot() is not None, "the valid entry behind it applied"
    finally:
        queue.stop()
        queue.redis.close()
        server.stop(kill=True)
