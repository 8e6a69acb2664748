"""End to end: `broadcaster run --dry-run` in a subprocess, fed by edits to the state file."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from support import (
    MASTODON_FR,
    ROOT,
    X_EN_WITHOUT_SECRETS,
    config_toml,
    journal_posts,
    wait_for,
    wait_journal_posts,
)

STATE = """
[[incidents]]
id = "sbg-power"
title = {{ en = "Power outage in Strasbourg", fr = "Coupure électrique à Strasbourg" }}
status = "{status}"
severity = "critical"
services = ["VPS"]
regions = ["SBG"]
started_at = 2026-11-26T07:23:00+01:00
message = {{ en = "{message}", fr = "{message} (fr)" }}
"""


def config_text(cadence: str = "1h") -> str:
    table = f"""
[cadence]
investigating = "{cadence}"
identified = "{cadence}"
monitoring = "{cadence}"
long_incident_interval = "{cadence}"
"""
    return config_toml(table, X_EN_WITHOUT_SECRETS, MASTODON_FR)


class DryRun:
    def __init__(self, tmp: Path, cadence: str = "1h") -> None:
        self.tmp = tmp
        self.config = tmp / "config.toml"
        self.config.write_text(config_text(cadence))
        self.state = tmp / "state.toml"
        self.journal = tmp / "data" / "dry-run.jsonl"
        self.proc: subprocess.Popen[str] | None = None

    def write_state(
        self, status: str = "investigating", message: str = "Power lost", atomic: bool = False
    ) -> float:
        text = STATE.format(status=status, message=message)
        if atomic:  # as vim, sed -i and ConfigMaps do: a new inode renamed over the path
            tmp = self.state.with_name(".state.toml.swp")
            tmp.write_text(text)
            os.replace(tmp, self.state)
        else:
            self.state.write_text(text)
        return time.time()

    def start(self) -> None:
        self.log = (self.tmp / "stderr.log").open("a")
        self.out = (self.tmp / "stdout.log").open("a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "broadcaster", "run", "--dry-run", "--config", str(self.config)],
            cwd=self.tmp,
            stdout=self.out,
            stderr=self.log,
            text=True,
        )

    def stderr(self) -> str:
        return (self.tmp / "stderr.log").read_text()

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str, str]:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(timeout=20)
        self.log.close()
        self.out.close()
        return self.proc.returncode, (self.tmp / "stdout.log").read_text(), self.stderr()

    def posts(self) -> list[dict]:
        return journal_posts(self.journal)

    def wait_posts(self, n: int, timeout: float = 10) -> list[dict]:
        return wait_journal_posts(self.journal, n, timeout)


@pytest.fixture
def dry(tmp_path: Path):
    d = DryRun(tmp_path)
    yield d
    if d.proc and d.proc.poll() is None:
        d.proc.kill()
        d.proc.wait()


def test_opens_threads_and_posts_each_saved_change_within_3_seconds(dry: DryRun) -> None:
    dry.write_state()
    dry.start()
    opened = dry.wait_posts(2)
    assert {(p["channel"], p["kind"]) for p in opened} == {
        ("x-en", "opened"),
        ("mastodon-fr", "opened"),
    }
    x = next(p for p in opened if p["channel"] == "x-en")
    assert x["platform"] == "x" and x["language"] == "en" and x["limit"] == 280
    assert x["reply_to"] is None and x["length"] <= x["limit"]
    assert "Power lost" in x["text"]
    fr = next(p for p in opened if p["channel"] == "mastodon-fr")
    assert fr["limit"] == 500 and "(fr)" in fr["text"]

    saved = dry.write_state(status="identified", message="Both feeds lost")
    posts = dry.wait_posts(4, timeout=3)
    update = next(p for p in posts[2:] if p["channel"] == "x-en")
    assert update["kind"] == "update" and "Both feeds lost" in update["text"]
    assert update["reply_to"] == x["idempotency_key"]
    assert datetime.fromisoformat(update["at"]).timestamp() - saved < 3

    saved = dry.write_state(status="monitoring", message="Power is back", atomic=True)
    posts = dry.wait_posts(6, timeout=3)
    assert {p["kind"] for p in posts[4:]} == {"update"}
    assert all("Power is back" in p["text"] for p in posts[4:] if p["channel"] == "x-en")

    code, out, _ = dry.stop()
    assert code == 0
    assert "DRY RUN — not published" in out


def test_a_broken_save_is_reported_and_the_last_good_state_kept(dry: DryRun) -> None:
    dry.write_state()
    dry.start()
    dry.wait_posts(2)
    dry.state.write_text('[[incidents]]\nid = "sbg-power"\nstatus = "fixed"\n')
    wait_for(lambda: "unknown status" in dry.stderr(), "the broken save to be reported", 5)
    dry.write_state(status="resolved", message="Power is back")
    posts = dry.wait_posts(4, timeout=5)
    assert {p["kind"] for p in posts[2:]} == {"resolved"}
    code, _, err = dry.stop()
    assert code == 0
    assert "state.toml" in err and "status" in err  # the broken save was named
    assert err.count("unknown status 'fixed'") == 1, "reported once, not at every poll"


def test_reminders_keep_the_promise_and_kill_9_loses_and_repeats_nothing(tmp_path: Path) -> None:
    dry = DryRun(tmp_path, cadence="2s")
    dry.write_state()
    dry.start()
    try:
        posts = dry.wait_posts(6, timeout=15)  # opened + 2 reminders on each channel
        for channel in ("x-en", "mastodon-fr"):
            mine = [p for p in posts if p["channel"] == channel]
            assert mine[0]["kind"] == "opened" and mine[1]["kind"] == "reminder"
            for previous, post in itertools.pairwise(mine):
                promised = datetime.fromisoformat(previous["next_update_at"])
                at = datetime.fromisoformat(post["at"])
                assert abs((at - promised).total_seconds()) < 5, "reminder late or early"
                assert post["text"] != previous["text"]
                assert post["reply_to"] == previous["idempotency_key"]
        assert dry.proc is not None
        dry.proc.kill()  # kill -9, possibly mid-post
        dry.proc.wait()
        before = len(dry.posts())
        dry.start()
        posts = dry.wait_posts(before + 4, timeout=15)
    finally:
        if dry.proc and dry.proc.poll() is None:
            dry.stop()
    keys = [p["idempotency_key"] for p in posts]
    assert len(keys) == len(set(keys)), "a post was published twice"
    for channel in ("x-en", "mastodon-fr"):
        mine = [p for p in posts if p["channel"] == channel]
        # nothing forgotten: the thread goes on with no gap in its numbering or its chain
        sequences = [int(p["idempotency_key"].split(":")[3].split(".")[1]) for p in mine]
        assert sequences == list(range(1, len(mine) + 1))
        for previous, post in itertools.pairwise(mine):
            assert post["reply_to"] == previous["idempotency_key"]


def test_sighup_with_a_broken_config_keeps_the_service_running(dry: DryRun) -> None:
    dry.write_state()
    dry.start()
    dry.wait_posts(2)
    good = dry.config.read_text()
    dry.config.write_text(good.replace('language = "en"', 'language = "english"'))
    assert dry.proc is not None
    dry.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload refused" in dry.stderr(), "the refused reload to be logged", 5)
    assert "channels.x-en.language" in dry.stderr()
    dry.write_state(status="identified", message="Both feeds lost")
    dry.wait_posts(4, timeout=3)  # still serving, on the old config
    dry.config.write_text(good.replace('"1h"', '"30m"'))
    dry.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reloaded" in dry.stderr(), "the good reload to be logged", 5)
    code, _, _ = dry.stop()
    assert code == 0


def test_status_shows_threads_and_next_due_times_after_a_run(dry: DryRun, capsys) -> None:
    from broadcaster.cli import main

    dry.write_state()
    dry.start()
    dry.wait_posts(2)
    dry.stop()
    # a budget, as ops would set for X's free tier: status says what is left of it
    dry.config.write_text(
        dry.config.read_text().replace('language = "en"', 'language = "en"\nmax_posts = "17/24h"')
    )
    assert main(["status", "--dry-run", "--config", str(dry.config), "--format", "json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["channels"]["x-en"]["sent"] == 1 and status["channels"]["x-en"]["healthy"]
    assert status["channels"]["x-en"]["budget_left"] == 16
    assert status["channels"]["mastodon-fr"]["budget_left"] is None
    (incident,) = status["incidents"]
    assert incident["id"] == "sbg-power"
    assert incident["threads"]["mastodon-fr"]["next_due_at"] is not None
    assert main(["status", "--config", str(dry.config), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["incidents"] == [], "a dry run left no real record"


def test_a_second_daemon_on_the_same_data_dir_refuses_to_start(dry: DryRun) -> None:
    dry.write_state()
    dry.start()
    dry.wait_posts(2)
    second = subprocess.run(
        [sys.executable, "-m", "broadcaster", "run", "--dry-run", "--config", str(dry.config)],
        cwd=dry.tmp,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert second.returncode == 2
    assert "already running" in second.stderr
    assert len(dry.posts()) == 2, "nothing posted twice"


def test_the_readme_first_command_shows_bilingual_posts_on_the_shipped_example(
    tmp_path: Path,
) -> None:
    """`broadcaster run --dry-run --config config.example.toml`, as a newcomer runs it."""
    import shutil

    shutil.copy(ROOT / "config.example.toml", tmp_path / "config.example.toml")
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    shutil.copytree(ROOT / "message_templates", tmp_path / "message_templates")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("X_", "MASTODON_"))}
    with (tmp_path / "out.log").open("w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "broadcaster",
                "run",
                "--dry-run",
                "--config",
                "config.example.toml",
            ],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        try:
            journal = tmp_path / "data" / "dry-run.jsonl"
            wait_for(
                lambda: (
                    {(p["channel"], p["incident_id"]) for p in journal_posts(journal)}
                    >= {
                        (c, i)
                        for c in ("x-en", "x-fr", "mastodon-en", "mastodon-fr")
                        for i in ("sbg-power-2017-11-09", "sbg-network-upgrade-2030-03-10")
                    }
                ),
                "every channel to announce both example incidents",
                20,
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0
    shown = (tmp_path / "out.log").read_text()
    assert shown.count("DRY RUN — not published") >= 8
    # "Prochain point à 14 h" today, "Prochain point le samedi 28 novembre à 0 h" near midnight.
    assert "Prochain point " in shown and "Next update by" in shown
    assert all(p["length"] <= p["limit"] for p in journal_posts(journal))


def test_a_second_dry_run_with_nothing_new_says_where_the_posts_already_are(dry: DryRun) -> None:
    dry.write_state()
    dry.start()
    dry.wait_posts(2)  # x-en and mastodon-fr announce the incident
    wait_for(lambda: "broadcaster running" in dry.stderr(), "the daemon to start")
    code, _, first = dry.stop()
    assert code == 0 and "nothing new to post" not in first
    dry.start()
    wait_for(lambda: "nothing new to post" in dry.stderr(), "the daemon to say so", 10)
    (line,) = [ln for ln in dry.stderr().splitlines() if "nothing new to post" in ln]
    assert "2 post(s) already published" in line and str(dry.journal) in line
    dry.stop()
    assert len(dry.posts()) == 2
