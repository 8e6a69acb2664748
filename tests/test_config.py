"""Config errors name the file, the line and the key; secrets never show."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest
from support import ROOT

from broadcaster.config import ConfigError, load_config
from broadcaster.logs import redact


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "message_templates").mkdir(exist_ok=True)
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


GOOD = """
[broadcaster]
state_file = "state.toml"
timezone = "Europe/Paris"

[channels.x-en]
platform = "x"
language = "en"
consumer_key = "${BCAST_TEST_KEY}"
"""


def test_the_shipped_example_loads_without_any_credentials_set(monkeypatch) -> None:
    for var in ("X_CONSUMER_KEY", "MASTODON_EN_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    config = load_config(ROOT / "config.example.toml")
    assert set(config.channels) == {"x-en", "x-fr", "mastodon-en", "mastodon-fr"}
    assert config.languages() == {"en", "fr"}
    assert config.state_file == ROOT / "examples" / "state.toml"
    assert "consumer_key" in config.channels["x-en"].missing_env


def test_env_vars_expand_and_secrets_never_print(tmp_path: Path, monkeypatch, caplog) -> None:
    monkeypatch.setenv("BCAST_TEST_KEY", "s3cr3t-consumer-key")
    config = load_config(write(tmp_path, GOOD))
    secret = config.channels["x-en"].credentials["consumer_key"]
    assert secret.reveal() == "s3cr3t-consumer-key"
    assert "s3cr3t" not in repr(config) and "s3cr3t" not in str(config.channels)
    assert redact("token=s3cr3t-consumer-key here") == "token=*** here"


@pytest.mark.parametrize(
    "snippet,line,key,words",
    [
        (
            '[broadcaster]\ntimezone = "Mars/Olympus"\n[channels.a]\nplatform="x"\nlanguage="en"\n',
            2,
            "broadcaster.timezone",
            "unknown timezone",
        ),
        (
            '[channels.a]\nplatform = "myspace"\nlanguage = "en"\n',
            2,
            "channels.a.platform",
            "expected one of",
        ),
        (
            '[channels.a]\nplatform = "x"\nlanguage = "en"\nconsumer_kee = "k"\n',
            4,
            "channels.a.consumer_kee",
            "did you mean 'consumer_key'",
        ),
        (
            '[cadence]\ninvestigating = "fast"\n[channels.a]\nplatform="x"\nlanguage="en"\n',
            2,
            "cadence.investigating",
            "expected a duration",
        ),
        (
            '[channels.a]\nplatform = "mastodon"\nlanguage = "fr"\n',
            1,
            "channels.a.api_base_url",
            "required for Mastodon",
        ),
        (
            '[channels.a]\nplatform = "x"\nlanguage = "en"\nseverities = ["huge"]\n',
            4,
            "channels.a.severities",
            "unknown severity",
        ),
        (
            '[cadence]\nlong_incident_interval = { severe = "1h" }\n'
            '[channels.a]\nplatform="x"\nlanguage="en"\n',
            2,
            "cadence.long_incident_interval",
            "unknown severity 'severe'",
        ),
        ('[channels.a\nplatform = "x"\n', 1, "", "TOML syntax"),  # no key to name
    ],
)
def test_bad_config_names_file_line_and_key(
    tmp_path: Path, snippet: str, line: int, key: str, words: str
) -> None:
    path = write(tmp_path, snippet)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    problem = err.value.problems[0]
    assert problem.path == str(path)
    assert problem.line == line
    assert problem.key == key
    assert words in problem.message
    assert str(problem) == f"{path}:{line}: {key + ': ' if key else ''}{problem.message}"
    assert str(problem) in str(err.value).splitlines()


def test_a_missing_config_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "config.toml")
    assert str(err.value) == (
        f"{tmp_path / 'config.toml'}: cannot read: No such file or directory"
        " (copy config.example.toml there, or give --config FILE)"
    )


def test_a_config_with_no_channel_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no channel configured"):
        load_config(write(tmp_path, "[broadcaster]\n"))


def test_secrets_are_redacted_from_log_output(tmp_path: Path, monkeypatch, capsys) -> None:
    from broadcaster.logs import configure

    monkeypatch.setenv("BCAST_TEST_KEY", "another-secret-value")
    load_config(write(tmp_path, GOOD))
    configure("json")
    logging.getLogger("t").error("request failed with key another-secret-value")
    err = capsys.readouterr().err
    assert "another-secret-value" not in err and "***" in err


def test_the_drill_config_posts_only_to_local_sandboxes() -> None:
    config = load_config(ROOT / "examples" / "drill.toml")
    assert {c.api_base_url for c in config.channels.values()} == {
        "http://127.0.0.1:8481",
        "http://127.0.0.1:8482",
    }
    assert all(not c.missing_env for c in config.channels.values())


def test_include_url_reaches_the_templates_channel_and_defaults_to_true(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD + "include_url = false\n"))
    assert config.channels["x-en"].info().include_url is False
    config = load_config(write(tmp_path, GOOD))
    assert config.channels["x-en"].info().include_url is True


def test_long_incident_interval_is_per_severity_and_one_duration_still_works(
    tmp_path: Path,
) -> None:
    channel = '[channels.a]\nplatform = "x"\nlanguage = "en"\n'
    default = load_config(write(tmp_path, channel)).cadence
    hours = timedelta(hours=5)
    # by default a critical outage stays at 30 minutes however long it lasts
    assert default.interval("investigating", "critical", hours) == timedelta(minutes=30)
    assert default.interval("identified", "major", hours) == timedelta(hours=1)
    old_style = load_config(
        write(tmp_path, '[cadence]\nlong_incident_interval = "2h"\n' + channel)
    ).cadence
    assert old_style.interval("investigating", "critical", hours) == timedelta(hours=2)
    table = load_config(
        write(tmp_path, '[cadence]\nlong_incident_interval = { minor = "3h" }\n' + channel)
    ).cadence
    assert table.interval("monitoring", "minor", hours) == timedelta(hours=3)
    assert table.interval("monitoring", "critical", hours) == timedelta(minutes=30)
