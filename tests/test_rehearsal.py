"""simulate and preview deliver under the channels' budgets: what they show is what goes out."""

from __future__ import annotations

import itertools
import shutil
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import ROOT

from broadcaster.config import Config, load_config
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


def site(tmp_path: Path, budget: str) -> Config:
    shutil.copytree(ROOT / "message_templates", tmp_path / "message_templates")
    (tmp_path / "state.toml").write_text("")
    (tmp_path / "config.toml").write_text(
        '[broadcaster]\nstate_file = "state.toml"\ntimezone = "Europe/Paris"\n'
        '[channels.m]\nplatform = "mastodon"\nlanguage = "en"\n'
        f'api_base_url = "https://mastodon.example"\n{budget}\n'
        '[channels.x]\nplatform = "x"\nlanguage = "fr"\n'
    )
    return load_config(tmp_path / "config.toml")


@pytest.fixture(scope="module")
def unlimited(tmp_path_factory: pytest.TempPathFactory) -> Config:
    return site(tmp_path_factory.mktemp("site"), "")


def test_an_update_superseded_while_the_budget_held_it_is_never_shown(tmp_path: Path) -> None:
    config = site(tmp_path, 'max_posts = "1/1h"')
    config = replace(config, channels={"m": config.channels["m"]})
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


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    max_posts=st.none() | st.tuples(st.integers(1, 6), st.sampled_from([30, 60, 180])),
    min_interval=st.none() | st.sampled_from([5, 20, 45]),
    severity=st.sampled_from(["minor", "major", "critical"]),
    changes=st.lists(
        st.tuples(
            st.integers(1, 5 * 60),
            st.sampled_from(["investigating", "identified", "monitoring", "resolved"]),
            st.none() | st.integers(5, 120),  # ops' next_update_at, minutes ahead
        ),
        max_size=8,
    ),
)
def test_every_promise_is_kept_within_any_budget(
    unlimited: Config,
    max_posts: tuple[int, int] | None,
    min_interval: int | None,
    severity: str,
    changes: list[tuple[int, str, int | None]],
) -> None:
    budget = {
        "max_posts": None if max_posts is None else (max_posts[0], timedelta(minutes=max_posts[1])),
        "min_interval": None if min_interval is None else timedelta(minutes=min_interval),
    }
    channels = {name: replace(c, **budget) for name, c in unlimited.channels.items()}
    config = replace(unlimited, channels=channels)
    steps = [(T0, [outage(severity=severity)])]
    for n, (minutes, status, promise) in enumerate(sorted(changes, key=lambda c: c[0])):
        at = T0 + timedelta(minutes=minutes)
        wanted = None if promise is None else at + timedelta(minutes=promise)
        long = " Les équipes travaillent sur place et rétablissent le service." * (n % 4)
        words = {"en": f"Step {n}.", "fr": f"Étape {n}.{long}"}
        changed = outage(severity=severity, status=status, message=words, next_update_at=wanted)
        steps.append((at, [changed]))
    shown = simulate(config, steps, T0, T0 + timedelta(hours=8))
    for name in ("m", "x"):
        posts = [s for s in shown if s.recorded.post.channel == name]
        assert posts and posts[0].at == T0
        for before, after in itertools.pairwise(posts):
            promised = before.recorded.post.next_update_at
            if promised is not None:  # after a closing post, only a reopening comes
                assert after.at <= promised, f"{name}: promised {promised}, came {after.at}"
