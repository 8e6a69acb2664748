"""`draft` made as safe as the console: a text per language, new incidents, human times."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from console_support import console_config

from broadcaster.cli import main
from broadcaster.statefile import load_state

SBG = "sbg-power-2017-11-09"
AT = "2017-11-09T10:30:00+01:00"
PARIS = ZoneInfo("Europe/Paris")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return console_config(tmp_path)


def draft(capsys, config: Path, *args: str) -> tuple[int, str, str]:
    code = main(["draft", *args, "--config", str(config), "--at", AT])
    out, err = capsys.readouterr()
    return code, out, err


def incident(config: Path, incident_id: str = SBG):
    state = config.parent / "state.toml"
    return next(i for i in load_state(state, {"en", "fr"}) if i.id == incident_id)


def test_texts_in_both_languages_at_once_including_a_new_cause(config: Path, capsys) -> None:
    code, out, err = draft(
        capsys,
        config,
        SBG,
        "--message",
        "en=Racks are back",
        "--message",
        "fr=Les baies sont là",
        "--workaround",
        "en=Use RBX",
        "--workaround",
        "fr=Utilisez RBX",
        "--write",
    )
    assert code == 0, err
    written = incident(config)
    assert written.message.values == {"en": "Racks are back", "fr": "Les baies sont là"}
    assert written.workaround.values == {"en": "Use RBX", "fr": "Utilisez RBX"}
    assert "Racks are back" in out and "Les baies sont là" in out


def test_service_names_per_language_or_one_list_for_all(config: Path, capsys) -> None:
    code, out, err = draft(
        capsys,
        config,
        SBG,
        "--services",
        "en=Dedicated servers, VPS",
        "--services",
        "fr=Serveurs dédiés, VPS",
        "--message",
        "en=Racks are back",
        "--message",
        "fr=Les baies sont là",
        "--write",
    )
    assert code == 0, err
    assert incident(config).services.get("fr") == ("Serveurs dédiés", "VPS")
    assert "Serveurs dédiés et VPS" in out and "Dedicated servers and VPS" in out
    code, _, err = draft(capsys, config, SBG, "--services", "Web hosting", "--write")
    assert code == 0, err
    assert incident(config).services.get("fr") == ("Web hosting",)


def test_a_plain_text_is_refused_when_channels_speak_several_languages(
    config: Path, capsys
) -> None:
    state = (config.parent / "state.toml").read_bytes()
    code, _, err = draft(capsys, config, SBG, "--message", "Power restored", "--write")
    assert code == 2
    assert "the channels post in en, fr" in err and "--message fr=…" in err
    assert (config.parent / "state.toml").read_bytes() == state
    code, _, err = draft(
        capsys, config, SBG, "--message", "Power restored", "--all-languages", "--write"
    )
    assert code == 0, err
    assert incident(config).message.get("fr") == "Power restored"


def test_next_update_as_a_clock_time_or_in_minutes_in_the_configured_timezone(
    config: Path, capsys
) -> None:
    code, _, err = draft(capsys, config, SBG, "--next-update", "11:15", "--write")
    assert code == 0, err
    assert incident(config).next_update_at == datetime(2017, 11, 9, 11, 15, tzinfo=PARIS)
    code, _, err = draft(capsys, config, SBG, "--next-update", "+30m", "--write")
    assert code == 0, err
    assert incident(config).next_update_at == datetime(2017, 11, 9, 11, 0, tzinfo=PARIS)
    code, _, err = draft(capsys, config, SBG, "--next-update", "soon")
    assert code == 2 and "--next-update: cannot read 'soon' as a time" in err


def test_the_warnings_are_about_the_draft_not_the_file_it_changes(
    config: Path, capsys, caplog: pytest.LogCaptureFixture
) -> None:
    code, _, err = draft(
        capsys, config, SBG, "--status", "monitoring", "--next-update", "22:30", "--write"
    )
    assert code == 0 and "the next update is 12 h away" in caplog.text + err
    caplog.clear()
    code, _, err = draft(capsys, config, SBG, "--next-update", "+30m")
    assert code == 0, err
    assert "away" not in caplog.text + err, "the promise being replaced is not warned about"


def test_a_promise_or_recovery_time_already_past_today_means_tomorrow(config: Path, capsys) -> None:
    # It is 10:30: "09:00" for when things come back can only mean tomorrow morning.
    code, _, err = draft(capsys, config, SBG, "--eta", "09:00", "--write")
    assert code == 0, err
    assert incident(config).eta == datetime(2017, 11, 10, 9, 0, tzinfo=PARIS)


def test_draft_new_opens_an_incident_starting_now(config: Path, capsys) -> None:
    code, out, err = draft(
        capsys,
        config,
        "--new",
        "rbx-network",
        "--title",
        "en=Network down in RBX",
        "--title",
        "fr=Réseau en panne à RBX",
        "--message",
        "en=Looking into it",
        "--message",
        "fr=Nous cherchons",
        "--severity",
        "critical",
        "--format",
        "json",
        "--write",
    )
    assert code == 0, err
    posts = json.loads(out)["posts"]
    assert {p["channel"] for p in posts} == {"x-en", "mastodon-fr"}
    assert {p["kind"] for p in posts} == {"opened"}
    opened = incident(config, "rbx-network")
    assert opened.status == "investigating" and opened.started_at == datetime.fromisoformat(AT)
    code, _, err = draft(capsys, config, "--new", "rbx-network", "--title", "en=x")
    assert code == 2 and "already exists" in err


def test_draft_new_maintenance_opens_scheduled_as_the_console_does(config: Path, capsys) -> None:
    code, _, err = draft(
        capsys,
        config,
        *("--new", "rbx-upgrade", "--kind", "maintenance", "--all-languages"),
        *("--title", "Router upgrade", "--starts-at", "22:00", "--ends-at", "23:30", "--write"),
    )
    assert code == 0, err
    opened = incident(config, "rbx-upgrade")
    assert opened.status == "scheduled" and opened.started_at == opened.starts_at


def test_console_on_a_port_in_use_or_out_of_range_is_one_error_line(config: Path, capsys) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        code = main(["console", "--config", str(config), "--listen", address])
    _, err = capsys.readouterr()
    assert code == 2
    assert err == f"error: cannot listen on {address}: Address already in use\n"
    code = main(["console", "--config", str(config), "--listen", "127.0.0.1:99999"])
    _, err = capsys.readouterr()
    assert code == 2
    assert err == "error: --listen: port out of range (0-65535) in '127.0.0.1:99999'\n"


def test_console_stopped_with_ctrl_c_ends_quietly(config: Path) -> None:
    import os
    import signal
    import socket
    import subprocess
    import sys
    import urllib.request

    from support import wait_for

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    argv = ["console", "--config", str(config), "--listen", f"127.0.0.1:{port}"]
    console = subprocess.Popen(
        [sys.executable, "-m", "broadcaster", *argv],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
    )

    def answers() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=2) as page:
                return bool(page.status == 200)
        except OSError:
            return False

    try:
        wait_for(answers, "the console to serve its login page", timeout=30)
    finally:
        console.send_signal(signal.SIGINT)
        _, err = console.communicate(timeout=30)
    assert console.returncode == 0
    assert "Traceback" not in err


def test_an_unknown_incident_id_suggests_the_close_one_or_lists_them(config: Path, capsys) -> None:
    code, _, err = draft(capsys, config, "sbg-power-2017-11-9", "--status", "monitoring")
    assert code == 2
    assert err.startswith("error: no incident 'sbg-power-2017-11-9' in ")
    assert err.endswith(" (did you mean 'sbg-power-2017-11-09'?)\n")
    code, _, err = draft(capsys, config, "rbx-network", "--status", "monitoring")
    assert code == 2
    assert "(ids there: sbg-network-upgrade-2030-03-10, sbg-power-2017-11-09;" in err
    assert err.endswith("; draft --new rbx-network … opens it)\n")


def test_a_language_no_channel_posts_in_is_refused_not_taken_as_text(config: Path, capsys) -> None:
    for option, value in (("--message", "de=Strom ist zurück"), ("--services", "de=Hosting")):
        code, _, err = draft(capsys, config, SBG, option, value, "--all-languages")
        assert code == 2
        assert err == f"error: {option}: 'de' is not a language the channels post in (en, fr)\n"
