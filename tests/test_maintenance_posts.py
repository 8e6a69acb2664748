"""A maintenance nobody started, as customers read it: not started yet, then, once its
window has ended, one post saying so and that a new date will follow; then silence."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from broadcaster import planner
from broadcaster.config import DEFAULT_CADENCE, CadenceConfig, ChannelConfig, parse_duration
from broadcaster.model import Incident, IncidentKind, Localized, PlannedPost, PostKind, Snapshot
from broadcaster.render import Renderer
from broadcaster.textfit import x_rule
from broadcaster.textsplit import split

TEMPLATES = Path(__file__).resolve().parents[1] / "message_templates"
PARIS = ZoneInfo("Europe/Paris")
CADENCE = CadenceConfig(
    every={s: {k: parse_duration(v) for k, v in sev.items()} for s, sev in DEFAULT_CADENCE.items()}
)
START = datetime(2017, 11, 14, 22, 0, tzinfo=PARIS)
END = datetime(2017, 11, 15, 1, 0, tzinfo=PARIS)
FORGOTTEN = Incident(
    id="sbg-maint",
    kind=IncidentKind.MAINTENANCE,
    title=Localized({"en": "Network upgrade in SBG", "fr": "Mise à niveau réseau à SBG"}),
    status="scheduled",
    severity="minor",
    started_at=START,
    starts_at=START,
    ends_at=END,
)


def night(platform: str, language: str) -> list[tuple[datetime, str]]:
    """Every post of the night ops forgot to start the maintenance, with its time."""
    channel = ChannelConfig(name="ch", platform=platform, language=language)
    renderer = Renderer(TEMPLATES, PARIS)
    snapshot = Snapshot(FORGOTTEN, 1, START - timedelta(days=1), START - timedelta(days=1))
    threads: dict[tuple[str, str], planner.ThreadState] = {}
    posts: list[tuple[datetime, str]] = []
    now: datetime | None = START - timedelta(hours=2)
    while now is not None and now < END + timedelta(hours=8):
        result = planner.plan([snapshot], threads, {"ch": channel}, CADENCE, now)
        threads = planner.apply(threads, result.decisions)
        for d in result.decisions:
            posts.append((now, renderer.render(snapshot, d.post, channel.info(), now)))
        now = result.wake_at
    return posts


@pytest.mark.parametrize("platform", ["x", "mastodon"])
def test_a_forgotten_maintenance_says_it_has_not_started_then_that_its_window_passed(
    platform: str,
) -> None:
    posts = night(platform, "en")
    late = [text for at, text in posts if at > START]
    assert late and all("Not started" in text for text in late)
    assert "Not started yet: it was due to start at 22:00" in late[0]
    last_at, last = posts[-1]
    assert last_at == END, "nothing after the window's end until ops change it"
    assert "has passed. A new date will follow." in last and "Next update" not in last
    assert sum("A new date will follow" in text for _, text in posts) == 1


@pytest.mark.parametrize("platform", ["x", "mastodon"])
def test_in_french_too(platform: str) -> None:
    posts = night(platform, "fr")
    late = [text for at, text in posts if at > START]
    assert "Pas encore commencée" in late[0] and "Prochain point" in late[0]
    last_at, last = posts[-1]
    assert last_at == END
    assert "est passé. Une nouvelle date suivra." in last and "Prochain point" not in last


def test_on_x_the_french_not_started_reminder_keeps_its_link_in_the_first_part() -> None:
    # Found by tests/test_posts_property.py: a longer French wording pushed the link out.
    late = FORGOTTEN.with_changes(
        {
            "title": {"en": "Network upgrade", "fr": "Mise à niveau du réseau"},
            "services": {"en": ["Dedicated servers"], "fr": ["Serveurs dédiés"]},
            "regions": ["RBX"],
            "message": {"fr": "Les serveurs peuvent redémarrer une fois."},
            "url": "https://status.example.com/maintenances/1",
        }
    )
    channel = ChannelConfig(name="ch", platform="x", language="fr")
    now = START + timedelta(seconds=30)
    promise = now + timedelta(minutes=30)
    post = PlannedPost("sbg-maint", "ch", PostKind.REMINDER, 1, 2, now, promise)
    rendered = Renderer(TEMPLATES, PARIS).render_post(
        Snapshot(late, 1, START, START), post, channel.info(), now
    )
    assert "Pas encore commencée (prévue à 22 h)\u00a0: nous confirmerons" in rendered.text
    first = split(rendered.text, x_rule(), head=rendered.head)[0]
    assert "https://status.example.com/maintenances/1" in first, first
