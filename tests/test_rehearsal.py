"""simulate and preview deliver under the channels' budgets: what they show is what goes out."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from support import ROOT

from broadcaster.config import load_config
from broadcaster.model import Incident, Localized
from broadcaster.rehearsal import simulate

PARIS = ZoneInfo("Europe/Paris")
T0 = datetime(2017, 11, 9, 7, 25, tzinfo=PARIS)


def outage(**changes: object) -> Incident:
    base = Incident(
        id="sbg-power",
        title=Localized({"en": "Power outage", "fr": "Coupure électrique"}),
        status="investigating",
        severity="critical",
        started_at=T0,
        url="https://status.example.com/sbg",
    )
    return base.with_changes(changes)


def test_an_update_superseded_while_the_budget_held_it_is_never_shown(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "message_templates", tmp_path / "message_templates")
    (tmp_path / "state.toml").write_text("")
    (tmp_path / "config.toml").write_text(
        '[broadcaster]\nstate_file = "state.toml"\ntimezone = "Europe/Paris"\n'
        '[channels.m]\nplatform = "mastodon"\nlanguage = "en"\n'
        'api_base_url = "https://mastodon.example"\nmax_posts = "1/1h"\n'
    )
    config = load_config(tmp_path / "config.toml")
    words = {"en": "Generators failed", "fr": "Groupes en panne"}
    steps = [
        (T0, [outage()]),
        (T0 + timedelta(minutes=10), [outage(status="identified", message=words)]),
        (T0 + timedelta(minutes=20), [outage(status="identified", message={"en": "On site"})]),
    ]
    shown = simulate(config, steps, T0, T0 + timedelta(hours=3))
    posts = [(s.at, s.recorded.post.kind.value, s.recorded.parts[0][0]) for s in shown]
    assert [kind for _, kind, _ in posts][:2] == ["opened", "update"]
    assert posts[0][0] == T0 and posts[1][0] == T0 + timedelta(hours=1), "one post an hour"
    assert "On site" in posts[1][2] and "Generators failed" not in posts[1][2]
    assert all("Generators failed" not in text for _, _, text in posts), "superseded: not shown"
