"""The commands ops run before anything is published: check, preview, draft, simulate, status."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support import ROOT

from broadcaster.cli import main

AT = "2017-11-09T10:35:00+01:00"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_check_passes_on_the_shipped_example(site: Path, capsys) -> None:
    code, out, _ = run(
        capsys, "check", "--dry-run", "--config", str(site / "config.toml"), "--format", "json"
    )
    assert code == 0
    report = json.loads(out)
    assert report["ok"] and report["incidents"] == 2 and report["problems"] == []


def test_check_names_file_line_incident_and_field_and_exits_2(site: Path, capsys) -> None:
    state = site / "examples" / "state.toml"
    text = state.read_text().replace('status = "identified"', 'status = "fixed"', 1)
    state.write_text(text)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if 'status = "fixed"' in ln)
    code, _, err = run(capsys, "check", "--dry-run", "--config", str(site / "config.toml"))
    assert code == 2
    assert f"state.toml:{line}: incident 'sbg-power-2017-11-09' field 'status'" in err


def test_check_reports_a_broken_template_with_its_line(site: Path, capsys) -> None:
    template = site / "message_templates" / "fr" / "reminder.j2"
    template.write_text(template.read_text() + "\n{{ incident.titel }}\n")
    lines = len(template.read_text().splitlines())
    code, _, err = run(capsys, "check", "--dry-run", "--config", str(site / "config.toml"))
    assert code == 2
    assert f"fr/reminder.j2:{lines}" in err and "titel" in err


def test_check_reports_a_config_error_and_exits_2(site: Path, capsys) -> None:
    config = site / "config.toml"
    config.write_text(config.read_text().replace('timezone = "Europe/Paris"', 'timezone = "CEST"'))
    code, _, err = run(capsys, "check", "--dry-run", "--config", str(config))
    assert code == 2 and "broadcaster.timezone" in err


def test_preview_shows_every_channel_with_counted_lengths(site: Path, capsys) -> None:
    code, out, _ = run(
        capsys,
        "preview",
        "sbg-power-2017-11-09",
        "--config",
        str(site / "config.toml"),
        "--format",
        "json",
        "--at",
        AT,
    )
    assert code == 0
    posts = json.loads(out)
    assert {p["channel"] for p in posts} == {"x-en", "x-fr", "mastodon-en", "mastodon-fr"}
    for p in posts:
        assert set(p) >= {"channel", "platform", "language", "incident_id", "kind", "parts"}
        assert p["kind"] == "opened" and p["incident_id"] == "sbg-power-2017-11-09"
        assert all(part["length"] <= part["limit"] for part in p["parts"])
        assert p["parts"][0]["limit"] == (280 if p["platform"] == "x" else 500)
    fr = next(p for p in posts if p["channel"] == "mastodon-fr")
    assert "Prochain point à 10 h 45" in fr["parts"][0]["text"]  # next_update_at from the file
    assert not (site / "data").exists(), "a preview must not create or touch the store"


def test_preview_shows_when_a_spent_budget_lets_each_post_go(site: Path, capsys) -> None:
    config = site / "config.toml"
    config.write_text(
        config.read_text().replace("[channels.x-en]\n", '[channels.x-en]\nmax_posts = "1/1h"\n', 1)
    )
    code, out, _ = run(capsys, "preview", "--config", str(config), "--format", "json", "--at", AT)
    assert code == 0
    posts = json.loads(out)
    x_en = [p for p in posts if p["channel"] == "x-en"]
    others = [p for p in posts if p["channel"] != "x-en"]
    assert [p["kind"] for p in x_en] == ["scheduled", "opened"]
    first, second = (datetime.fromisoformat(p["at"]) for p in x_en)
    assert first == datetime.fromisoformat(AT)
    # one part an hour: the opening waits for the first post's parts to leave the window
    assert second == first + timedelta(hours=len(x_en[0]["parts"]))
    assert x_en[1]["at"].endswith("+01:00"), "times in the configured timezone"
    assert all(p["at"] == AT for p in others), "unlimited channels post at once"
    for p in x_en:  # and what each promises, the budget can keep
        promised = datetime.fromisoformat(p["next_update_at"])
        assert promised >= datetime.fromisoformat(p["at"]) + timedelta(hours=len(p["parts"]))


def test_preview_text_is_readable(site: Path, capsys) -> None:
    code, out, _ = run(capsys, "preview", "--config", str(site / "config.toml"), "--at", AT)
    assert code == 0
    assert "x-fr (x, fr) · sbg-power-2017-11-09 · opened" in out
    assert "/280 characters" in out


def test_draft_renders_the_update_and_write_applies_it(site: Path, capsys) -> None:
    config = str(site / "config.toml")
    state = site / "examples" / "state.toml"
    before = state.read_text()
    code, out, _ = run(
        capsys,
        "draft",
        "sbg-power-2017-11-09",
        "--config",
        config,
        "--status",
        "monitoring",
        "--message",
        "Power restored on both feeds.",
        "--lang",
        "en",
        "--format",
        "json",
        "--at",
        AT,
    )
    assert code == 0
    result = json.loads(out)
    assert {p["kind"] for p in result["posts"]} == {"update"}
    en = next(p for p in result["posts"] if p["channel"] == "x-en")
    assert "Power restored on both feeds." in en["text"]
    assert state.read_text() == before, "draft without --write must not touch the file"

    code, _, _ = run(
        capsys,
        "draft",
        "sbg-power-2017-11-09",
        "--config",
        config,
        "--status",
        "monitoring",
        "--message",
        "Power restored on both feeds.",
        "--lang",
        "en",
        "--write",
        "--at",
        AT,
    )
    assert code == 0
    after = state.read_text()
    assert 'status = "monitoring"' in after and "Power restored on both feeds." in after
    comments = [ln for ln in before.splitlines() if ln.lstrip().startswith("#")]
    assert all(c in after for c in comments), "--write must keep ops' comments"


def test_draft_refuses_an_invalid_change(site: Path, capsys) -> None:
    code, _, err = run(
        capsys,
        "draft",
        "sbg-power-2017-11-09",
        "--config",
        str(site / "config.toml"),
        "--status",
        "fixed",
    )
    assert code == 2 and "unknown status 'fixed'" in err


def test_simulate_replays_a_day_with_every_promise_kept(site: Path, capsys) -> None:
    code, out, _ = run(
        capsys,
        "simulate",
        "--config",
        str(site / "config.toml"),
        "--timeline",
        str(site / "examples" / "timeline.toml"),
        "--hours",
        "12",
        "--format",
        "json",
    )
    assert code == 0
    posts = json.loads(out)
    assert {"at", "channel", "incident_id", "kind", "text"} <= set(posts[0])
    for post in posts:  # where it goes, and its exact parts as preview shows them
        assert post["platform"] in ("x", "mastodon") and post["language"] in ("en", "fr")
        assert post["text"] == "\n\n".join(part["text"] for part in post["parts"])
        assert all(part["length"] <= part["limit"] for part in post["parts"])
    x_en = [
        p for p in posts if p["channel"] == "x-en" and p["incident_id"] == "sbg-power-2017-11-09"
    ]
    assert x_en[0]["kind"] == "opened" and x_en[-1]["kind"] == "resolved"
    assert {"update", "reminder"} <= {p["kind"] for p in x_en}
    times = [datetime.fromisoformat(p["at"]) for p in x_en]
    gaps = [(b - a).total_seconds() / 60 for a, b in itertools.pairwise(times)]
    assert max(gaps) <= 60, "never silent longer than the longest cadence"
    texts = [p["text"] for p in x_en]
    assert len(texts) == len(set(texts)), "never the same text twice in a thread"


DAY = timedelta(hours=24)


def test_simulate_applies_the_budget_and_every_promise_is_still_kept(site: Path, capsys) -> None:
    config = site / "config.toml"
    config.write_text(
        config.read_text().replace(
            "[channels.x-en]\n", '[channels.x-en]\nmax_posts = "17/24h"\n', 1
        )
    )
    code, out, _ = run(
        capsys,
        "simulate",
        "--config",
        str(config),
        "--timeline",
        str(site / "examples" / "timeline.toml"),
        "--hours",
        "24",
        "--format",
        "json",
    )
    assert code == 0
    posts = json.loads(out)
    x_en = [p for p in posts if p["channel"] == "x-en"]
    times = [datetime.fromisoformat(p["at"]) for p in x_en]
    for start in times:  # every published part counts against max_posts, in any 24 h
        window = [p for p, at in zip(x_en, times, strict=True) if start <= at < start + DAY]
        assert sum(len(p["parts"]) for p in window) <= 17, f"over budget from {start}"
    outage = [p for p in x_en if p["incident_id"] == "sbg-power-2017-11-09"]
    assert outage[-1]["kind"] == "resolved" and outage[-1]["at"].startswith("2017-11-09T17:45")
    for incident_id in {p["incident_id"] for p in x_en}:
        thread = [p for p in x_en if p["incident_id"] == incident_id]
        for before, after in itertools.pairwise(thread):
            promised = datetime.fromisoformat(before["next_update_at"])
            assert datetime.fromisoformat(after["at"]) <= promised, "a promise the budget broke"
    # the unlimited channels keep the cadence: many more posts than the budget allows
    mastodon = [p for p in posts if p["channel"] == "mastodon-fr"]
    assert len(mastodon) > len(x_en)


def test_status_after_a_simulated_history(site: Path, capsys) -> None:
    code, out, _ = run(capsys, "status", "--config", str(site / "config.toml"), "--format", "json")
    assert code == 0 and json.loads(out)["incidents"] == []


def test_check_warns_when_a_budget_cannot_keep_the_cadence(site: Path, capsys) -> None:
    config = site / "config.toml"
    text = config.read_text().replace(
        "[channels.x-fr]\n", '[channels.x-fr]\nmax_posts = "17/24h"\n', 1
    )
    config.write_text(text)
    code, _, err = run(capsys, "check", "--dry-run", "--config", str(config))
    assert code == 0
    assert "channels.x-fr.max_posts: 17 per 24 h allows one post every 85 min" in err
    assert "every 15 min" in err


def test_status_without_a_store_points_to_the_dry_run_store(site: Path, capsys) -> None:
    code, out, _ = run(capsys, "status", "--config", str(site / "config.toml"))
    assert code == 0
    assert "nothing recorded yet" in out
    assert "broadcaster run --dry-run" in out and "broadcaster status --dry-run" in out


def test_status_shows_times_in_the_configured_timezone_and_a_never_delivered_channel(
    site: Path, capsys
) -> None:
    from store_contract import T0, record

    from broadcaster.app import open_store
    from broadcaster.config import load_config
    from broadcaster.model import PostKind
    from broadcaster.store import ChannelChange

    config = load_config(site / "config.toml")  # timezone = "Europe/Paris": UTC+1 in November
    store = open_store(config, dry_run=False)
    try:
        post = record(store, PostKind.OPENED, 1, channel="x-en")
        store.mark_failed(post.key(1), "403 Forbidden")
        reset = datetime(2017, 11, 9, 22, 0, tzinfo=UTC)
        store.update_channel(
            "x-en", ChannelChange(healthy=False, paused_until=reset, last_error="403"), T0
        )
    finally:
        store.close()
    code, out, _ = run(capsys, "status", "--config", str(site / "config.toml"))
    assert code == 0
    (x_en,) = [line for line in out.splitlines() if line.startswith("  x-en:")]
    assert "NEVER DELIVERED" in x_en
    assert "paused until 2017-11-09T23:00:00+01:00" in x_en  # 22:00 UTC, shown in Paris time
    code, out, _ = run(capsys, "status", "--config", str(site / "config.toml"), "--format", "json")
    channel = json.loads(out)["channels"]["x-en"]
    assert channel["never_delivered"] and channel["paused_until"] == "2017-11-09T23:00:00+01:00"


def test_the_readme_tour_activates_the_venv_before_its_bare_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    tour = readme.split("## A five-minute tour", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#", 1)[0].strip() for line in tour.splitlines()]
    first_bare = next(i for i, c in enumerate(commands) if c.startswith("broadcaster "))
    assert ". .venv/bin/activate" in commands[:first_bare], "broadcaster would not be found"
    assert (ROOT / "pyproject.toml").read_text().count('broadcaster = "') == 1  # the script


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["preview", "--at", "tomorrow"], "argument --at: cannot read 'tomorrow' as a time"),
        (["simulate", "--hours", "-3"], "argument --hours: expected a number of hours above 0"),
    ],
)
def test_a_bad_time_or_duration_on_the_command_line_says_what_it_expects(
    site: Path, capsys, argv: list[str], words: str
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--config", str(site / "config.toml")])
    _, err = capsys.readouterr()
    assert exit_.value.code == 2
    assert words in err.splitlines()[-1]
    assert "_aware" not in err and "Traceback" not in err


def test_preview_and_simulate_show_times_in_the_configured_timezone(site: Path, capsys) -> None:
    config = str(site / "config.toml")
    at = "2017-11-09T06:30:00+00:00"  # 07:30 in Paris, the example's timezone
    code, out, _ = run(capsys, "preview", "--config", config, "--at", at)
    assert code == 0
    assert out.startswith("2017-11-09T07:30:00+01:00  ")
    code, out, _ = run(capsys, "simulate", "--config", config, "--start", at, "--hours", "1")
    assert code == 0
    assert out.startswith("2017-11-09T07:30:00+01:00  ")
    assert out.endswith(" from 2017-11-09T07:30:00+01:00 to 2017-11-09T08:30:00+01:00\n")
