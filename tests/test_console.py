"""The drafting console over HTTP (no browser): login, CSRF, publishing, conflicts, errors."""

from __future__ import annotations

import json
import logging
import re
import warnings
from pathlib import Path

import pytest
from console_support import TOKEN, console_config, csrf_of, form_of, login

from broadcaster.cli import main
from broadcaster.config import ConfigError, load_config
from broadcaster.statefile import load_state

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from broadcaster.web.console import create_app
from broadcaster.web.console.sessions import LoginLimiter

SBG = "sbg-power-2017-11-09"


@pytest.fixture
def setup(tmp_path: Path):
    config = load_config(console_config(tmp_path))
    client = TestClient(create_app(config, config.console.require_token(config.path)))
    return config, client


@pytest.fixture
def logged(setup):
    config, client = setup
    assert login(client).status_code == 303
    return config, client


def test_login_sets_a_strict_httponly_cookie_and_pages_carry_a_csp(setup) -> None:
    _, client = setup
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"
    response = login(client)
    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    page = client.get("/")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert f'data-testid="incident-{SBG}"' in page.text
    assert TOKEN not in page.text


def test_a_wrong_token_is_refused_and_attempts_are_rate_limited(tmp_path: Path) -> None:
    config = load_config(console_config(tmp_path))
    client = TestClient(
        create_app(config, config.console.require_token(config.path), limiter=LoginLimiter(3, 60))
    )
    codes = [login(client, token="wrong-token-xxxxxxxx").status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    assert login(client).status_code == 429, "even the right token waits out the limit"


def test_a_post_without_the_csrf_token_changes_nothing(logged) -> None:
    config, client = logged
    before = config.state_file.read_bytes()
    form = form_of(client.get(f"/incidents/{SBG}").text)
    form["message-en"] = "Changed without a token"
    del form["csrf"]
    assert client.post(f"/incidents/{SBG}", data=form).status_code == 403
    form["csrf"] = "forged"
    assert client.post(f"/incidents/{SBG}", data=form).status_code == 403
    assert client.post("/preview", json={"form": {}}).status_code == 403
    assert config.state_file.read_bytes() == before
    other = TestClient(client.app)
    assert other.post(f"/incidents/{SBG}", data=form).status_code == 401


def test_publish_writes_through_the_draft_editor_keeping_comments_and_logs_the_author(
    logged,
) -> None:
    config, client = logged
    form = form_of(client.get(f"/incidents/{SBG}").text)
    form |= {
        "message-en": "Racks are back.",
        "message-fr": "Les baies sont revenues.",
        "status": "monitoring",
        "next_update_at": "+30m",
    }
    page = client.post(f"/incidents/{SBG}", data=form)
    assert page.status_code == 200 and 'data-testid="saved"' in page.text
    assert '<b>message (fr)</b>: <span class="text">Les baies sont revenues.</span>' in page.text
    text = config.state_file.read_text()
    assert "# Stable identifier" in text, "comments are kept"
    incident = next(i for i in load_state(config.state_file, {"en", "fr"}) if i.id == SBG)
    assert incident.status == "monitoring"
    assert incident.message is not None and incident.message.get("fr") == "Les baies sont revenues."
    audit = [json.loads(line) for line in (config.data_dir / "console-audit.jsonl").open()]
    assert audit[-1]["author"] == "Ana Lead" and audit[-1]["incident_id"] == SBG
    assert audit[-1]["fields"] == ["message", "next_update_at", "status"]
    assert audit[-1]["hash_before"] != audit[-1]["hash_after"]
    form = form_of(client.get(f"/incidents/{SBG}").text) | {"status": "identified"}
    assert 'data-testid="saved"' in client.post(f"/incidents/{SBG}", data=form).text
    audit = [json.loads(line) for line in (config.data_dir / "console-audit.jsonl").open()]
    assert audit[-1]["fields"] == ["status"], "the next update's seconds are not rounded away"


def test_service_names_are_written_per_language_when_they_differ(logged) -> None:
    config, client = logged
    form = form_of(client.get(f"/incidents/{SBG}").text)
    form |= {"services-en": "Dedicated servers, VPS", "services-fr": "Serveurs dédiés, VPS"}
    assert 'data-testid="saved"' in client.post(f"/incidents/{SBG}", data=form).text
    incident = next(i for i in load_state(config.state_file, {"en", "fr"}) if i.id == SBG)
    assert incident.services.get("fr") == ("Serveurs dédiés", "VPS")
    assert incident.services.get("en") == ("Dedicated servers", "VPS")
    form = form_of(client.get(f"/incidents/{SBG}").text)
    assert form["services-fr"] == "Serveurs dédiés, VPS", "the page shows each language's names"


def test_a_form_opened_before_someone_elses_save_is_refused_with_what_changed(logged) -> None:
    config, client = logged
    mine = form_of(client.get(f"/incidents/{SBG}").text)
    theirs = dict(mine, status="monitoring", **{"message-fr": "Leur texte à eux."})
    assert 'data-testid="saved"' in client.post(f"/incidents/{SBG}", data=theirs).text
    saved = config.state_file.read_bytes()
    mine["message-en"] = "My late update"
    page = client.post(f"/incidents/{SBG}", data=mine)
    assert page.status_code == 409
    assert 'data-testid="conflict"' in page.text and "status: identified → monitoring" in page.text
    assert "message (fr): Le courant est rétabli" in page.text, "each language's change is named"
    assert "My late update" in page.text, "the person's text is kept on the page"
    assert config.state_file.read_bytes() == saved
    # Publishing again from the conflict page adds my change to theirs: nothing reverted.
    again = form_of(page.text)
    assert again["status"] == "monitoring" and again["message-fr"] == "Leur texte à eux."
    assert 'data-testid="saved"' in client.post(f"/incidents/{SBG}", data=again).text
    incident = next(i for i in load_state(config.state_file, {"en", "fr"}) if i.id == SBG)
    assert incident.status == "monitoring" and incident.message is not None
    assert incident.message.get("fr") == "Leur texte à eux."
    assert incident.message.get("en") == "My late update"


def test_a_field_both_editors_changed_is_named_in_the_conflict(logged) -> None:
    _, client = logged
    mine = form_of(client.get(f"/incidents/{SBG}").text)
    long = "Their words, " + "and a long explanation " * 8 + "to weigh against mine."
    theirs = dict(mine, **{"message-en": long})
    assert 'data-testid="saved"' in client.post(f"/incidents/{SBG}", data=theirs).text
    page = client.post(f"/incidents/{SBG}", data=dict(mine, **{"message-en": "My words."}))
    assert page.status_code == 409
    assert "you both changed <b>message (en)</b>" in page.text
    assert long in page.text, "their whole text, to weigh against mine"
    assert form_of(page.text)["message-en"] == "My words."


def test_bad_input_is_shown_at_its_field_with_checks_words_and_nothing_is_saved(logged) -> None:
    config, client = logged
    before = config.state_file.read_bytes()
    form = form_of(client.get(f"/incidents/{SBG}").text)
    form |= {"next_update_at": "half past ten", "title-fr": "", "url": "ftp://x"}
    page = client.post(f"/incidents/{SBG}", data=form)
    assert page.status_code == 422
    assert "cannot read &#39;half past ten&#39; as a time" in page.text
    assert "is not an http(s) URL" in page.text
    result = client.post(
        "/preview", json={"form": form, "incident_id": SBG}, headers={"x-csrf-token": form["csrf"]}
    ).json()
    assert set(result["errors"]) == {"next_update_at", "title", "url"}
    assert config.state_file.read_bytes() == before


def test_crafted_choices_impossible_times_and_texts_over_the_thread_cap_are_refused_at_their_field(
    logged,
) -> None:
    config, client = logged
    before = config.state_file.read_bytes()
    clean = form_of(client.get(f"/incidents/{SBG}").text)
    cases = {
        "status": ("exploded", "unknown status &#39;exploded&#39;"),
        "severity": ("apocalyptic", "unknown severity &#39;apocalyptic&#39;"),
        "next_update_at": ("25:99", "cannot read &#39;25:99&#39; as a time"),
        "eta": ("+30x", "cannot read &#39;+30x&#39; as a time"),
        "message-en": ("word " * 800, "too long: its posts would need at least"),
    }
    for key, (value, words) in cases.items():
        page = client.post(f"/incidents/{SBG}", data=clean | {key: value})
        assert page.status_code == 422, key
        field = key.split("-")[0]
        at_field = re.search(f'data-testid="error-{field}"[^>]*>([^<]*)</p>', page.text)
        assert at_field and words in at_field.group(1), (key, page.text[-2000:])
    assert config.state_file.read_bytes() == before


def test_the_preview_warns_as_check_does_about_the_incident_being_written(
    logged, caplog: pytest.LogCaptureFixture
) -> None:
    _, client = logged
    form = form_of(client.get(f"/incidents/{SBG}").text)
    form |= {"status": "identified", "cause-en": "", "cause-fr": ""}
    with caplog.at_level(logging.WARNING):
        result = client.post(
            "/preview",
            json={"form": form, "incident_id": SBG},
            headers={"x-csrf-token": form["csrf"]},
        ).json()
    assert any("'cause'" in w and "no cause is given" in w for w in result["warnings"])
    assert not caplog.records, "the page shows the warnings: the log is not filled at each key"


def test_a_new_incident_is_appended_and_its_preview_shows_the_opening_posts(logged) -> None:
    config, client = logged
    page = client.get("/new")
    form = form_of(page.text)
    assert form["status"] == "investigating" and form["started_at"]
    assert form["kind"] == "incident" and form["severity"] == "major"
    maintenance = form_of(client.get("/new?kind=maintenance").text)
    assert (maintenance["kind"], maintenance["status"]) == ("maintenance", "scheduled")
    assert maintenance["started_at"] == "" and maintenance["severity"] == "major"
    form |= {
        "id": "rbx-network",
        "title-en": "Network <b>down</b>",
        "title-fr": "Réseau en panne",
        "message-en": "Looking into it",
        "message-fr": "Nous cherchons",
    }
    preview = client.post(
        "/preview", json={"form": form}, headers={"x-csrf-token": csrf_of(page.text)}
    ).json()
    assert not preview["errors"]
    posts = preview["channels"]["x-en"]["posts"]
    assert posts[0]["kind"] == "opened" and "Network <b>down</b>" in posts[0]["parts"][0]["text"]
    assert posts[0]["parts"][0]["length"] <= 280
    # Someone saves another incident meanwhile: appending overwrites nothing, so no conflict.
    other = form_of(client.get(f"/incidents/{SBG}").text) | {"status": "monitoring"}
    assert 'data-testid="saved"' in client.post(f"/incidents/{SBG}", data=other).text
    saved = client.post("/new", data=form)
    assert 'data-testid="saved"' in saved.text
    assert next(i for i in load_state(config.state_file, {"en", "fr"}) if i.id == SBG).status == (
        "monitoring"
    )
    assert "Network &lt;b&gt;down&lt;/b&gt;" in saved.text and "<b>down</b>" not in saved.text
    assert [i.id for i in load_state(config.state_file, {"en", "fr"})][-1] == "rbx-network"
    again = client.post("/new", data=form_of(client.get("/new").text) | {"id": "rbx-network"})
    assert again.status_code == 422 and "duplicate id" in again.text


def test_the_console_command_needs_a_token_and_never_platform_credentials(
    tmp_path: Path, capsys
) -> None:
    config = console_config(tmp_path)
    config.write_text(config.read_text().replace(f'token = "{TOKEN}"', 'token = "${UNSET_T}"'))
    assert main(["console", "--config", str(config)]) == 2
    assert "console.token: environment variable UNSET_T is not set" in capsys.readouterr().err
    config.write_text(config.read_text().replace('token = "${UNSET_T}"', 'token = "short"'))
    with pytest.raises(ConfigError, match="too short"):
        load_config(config)
    config.write_text(config.read_text().replace('token = "short"', 'listen = "nowhere"'))
    with pytest.raises(ConfigError, match=r"console\.listen: expected HOST:PORT"):
        load_config(config)


def test_the_editor_refuses_a_file_changed_since_the_hash_the_person_saw(tmp_path: Path) -> None:
    from broadcaster.statefile import StateFileError, append_incident, apply_changes

    config = load_config(console_config(tmp_path))
    seen = config.state_file.read_bytes()
    config.state_file.write_text(config.state_file.read_text() + "\n# an edit by hand\n")
    edited = config.state_file.read_bytes()
    import hashlib

    stale = hashlib.sha256(seen).hexdigest()
    with pytest.raises(StateFileError, match="the file changed"):
        apply_changes(config.state_file, SBG, {"status": "monitoring"}, expected_sha256=stale)
    with pytest.raises(StateFileError, match="the file changed"):
        append_incident(config.state_file, {"id": "x"}, expected_sha256=stale)
    assert config.state_file.read_bytes() == edited


def test_the_edit_page_shows_what_was_posted_with_links_and_when_the_next_update_is_due(
    logged,
) -> None:
    from datetime import UTC, datetime, timedelta

    from store_contract import record

    from broadcaster.app import store_path
    from broadcaster.model import PostKind
    from broadcaster.store import Store

    config, client = logged
    incident = next(i for i in load_state(config.state_file, {"en", "fr"}) if i.id == SBG)
    sent_at = datetime.now(UTC) - timedelta(minutes=20)
    config.data_dir.mkdir(exist_ok=True)
    store = Store(store_path(config, dry_run=False))
    store.apply_incidents([incident], sent_at)
    opened = record(store, PostKind.OPENED, 1, at=sent_at, incident_id=SBG)
    store.mark_sending(opened.key(1))
    store.mark_sent(opened.key(1), "1", "https://x.example/i/status/1", sent_at)
    store.close()
    page = client.get(f"/incidents/{SBG}").text
    assert 'href="https://x.example/i/status/1"' in page
    assert f"{SBG} opened 1 part 0" in page
    assert "5 min late" in page, "promised 15 min after a post 20 min ago"
    listing = client.get("/").text
    assert "5 min late" in listing


def _incident(config, incident_id: str = SBG):
    return next(
        (i for i in load_state(config.state_file, {"en", "fr"}) if i.id == incident_id), None
    )


def test_a_publish_rewrites_only_the_fields_the_person_changed(logged) -> None:
    """Fields nobody touched stay as the file says them, even where the form cannot say it
    alike: a service name with a comma, a list given per language though the same."""
    config, client = logged
    text = config.state_file.read_text()
    text = text.replace('"Hébergement web", "VPS"', '"Hébergement web, mutualisé", "VPS"')
    text = text.replace('regions = ["SBG"]\n', 'regions = { en = ["SBG"], fr = ["SBG"] }\n', 1)
    assert "mutualisé" in text and 'fr = ["SBG"]' in text
    config.state_file.write_text(text)
    before = _incident(config)
    form = form_of(client.get(f"/incidents/{SBG}").text) | {"message-en": "Only this changes."}
    page = client.post(f"/incidents/{SBG}", data=form)
    assert 'data-testid="saved"' in page.text
    after = _incident(config)
    assert after.services == before.services and after.regions == before.regions
    assert 'regions = { en = ["SBG"], fr = ["SBG"] }' in config.state_file.read_text()
    audit = (config.data_dir / "console-audit.jsonl").read_text().splitlines()
    assert json.loads(audit[-1])["fields"] == ["message"]


def test_a_new_id_typed_with_a_trailing_space_shows_the_saved_incident(logged) -> None:
    config, client = logged
    form = form_of(client.get("/new").text) | {
        "id": "rbx-z ",
        **{f"{name}-{lang}": "Text" for name in ("title", "message") for lang in ("en", "fr")},
    }
    page = client.post("/new", data=form)
    assert 'data-testid="saved"' in page.text and _incident(config, "rbx-z") is not None
    assert 'action="/incidents/rbx-z"' in page.text
    assert form_of(page.text)["title-en"] == "Text"


def test_two_writers_take_turns_so_the_second_sees_the_first_save(tmp_path: Path) -> None:
    """The console and `draft --write` check the file is as the person saw it, then replace
    it. Without a lock around the two, both could pass the check and one save be lost."""
    import fcntl
    import hashlib
    import os
    import threading

    from broadcaster.statefile import StateFileError, apply_changes

    config = load_config(console_config(tmp_path))
    seen = hashlib.sha256(config.state_file.read_bytes()).hexdigest()
    outcome: list[str] = []

    def second_writer() -> None:
        try:
            apply_changes(config.state_file, SBG, {"status": "monitoring"}, expected_sha256=seen)
            outcome.append("saved")
        except StateFileError as e:
            outcome.append(str(e))

    first = os.open(config.state_file.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(first, fcntl.LOCK_EX)  # the first writer, between its check and replace
        writer = threading.Thread(target=second_writer)
        writer.start()
        writer.join(0.5)
        assert writer.is_alive(), "the second writer waits for the first's replace"
        config.state_file.write_text(config.state_file.read_text() + "\n# the first save\n")
    finally:
        os.close(first)
    writer.join(10)
    assert outcome and "the file changed" in outcome[0]
    assert config.state_file.read_text().endswith("# the first save\n")
