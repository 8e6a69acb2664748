"""The shipped day (examples/timeline.toml) as customers read it, on X and Mastodon, in
English and French: one test per rule of what a good post says (COMMS.md).

The timeline is the 2017 Strasbourg power outage (critical: cause known at 08:10, eta from
10:30, resolved at 17:45 with "a detailed postmortem within a week") and an evening
maintenance announced at 13:00 (scheduled, started, completed).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from support import ROOT

from broadcaster import i18n
from broadcaster.config import ChannelConfig, load_config
from broadcaster.model import Names, PostKind
from broadcaster.rehearsal import Shown, simulate
from broadcaster.statefile import load_timeline

PARIS = ZoneInfo("Europe/Paris")
OUTAGE = "sbg-power-2017-11-09"
CHECKS = "sbg-power-checks-2017-11-09"
URLS = {
    OUTAGE: "https://status.example.com/incidents/sbg-power",
    CHECKS: "https://status.example.com/maintenances/sbg-power-checks",
}
CAUSE_KNOWN = datetime(2017, 11, 9, 8, 10, tzinfo=PARIS)
ETA_SET = datetime(2017, 11, 9, 10, 30, tzinfo=PARIS)
CHANNELS = ("x-en", "x-fr", "mastodon-en", "mastodon-fr")


@pytest.fixture(scope="module")
def day() -> list[Shown]:
    config = load_config(ROOT / "config.example.toml")
    steps = load_timeline(ROOT / "examples" / "timeline.toml", config.languages())
    start = steps[0][0]
    return simulate(config, steps, start, start + timedelta(hours=12))


def posts(day: list[Shown], channel: str, incident: str | None = None) -> list[Shown]:
    return [
        s
        for s in day
        if s.recorded.post.channel == channel
        and (incident is None or s.recorded.post.incident_id == incident)
    ]


def parts(shown: Shown) -> list[str]:
    return [text for text, _, _ in shown.recorded.parts]


def whole(shown: Shown) -> str:
    return "\n".join(parts(shown))


def french(shown: Shown) -> bool:
    return shown.language == "fr"


@pytest.mark.parametrize("channel", CHANNELS)
def test_every_kind_is_posted_on_every_channel(day: list[Shown], channel: str) -> None:
    kinds = {s.recorded.post.kind for s in posts(day, channel)}
    assert kinds == set(PostKind)


@pytest.mark.parametrize("channel", CHANNELS)
def test_the_first_part_carries_status_scope_next_update_expected_recovery_and_link(
    day: list[Shown], channel: str
) -> None:
    for shown in posts(day, channel):
        post = shown.recorded.post
        first = parts(shown)[0]
        assert URLS[post.incident_id] in first, first
        scope = "Serveurs dédiés" if french(shown) else "Dedicated servers"
        if not post.kind.is_final:
            assert scope in first, first
            assert post.next_update_at is not None
            assert i18n.clock(post.next_update_at.astimezone(PARIS), shown.language) in first
        if post.incident_id == OUTAGE and shown.at >= ETA_SET and not post.kind.is_final:
            assert ("Rétablissement prévu à" if french(shown) else "Expected recovery at") in first


_NOISE = re.compile(
    r"https?://\S+|\(\d+/\d+\)|Posted at [\d:]+ \w+|Publié à [\d h min s]+"
    r"|\d{1,2}(:\d\d| h \d\d| h)"
)


@pytest.mark.parametrize("channel", CHANNELS)
def test_no_part_is_only_a_link_a_time_a_stamp_or_a_part_number(
    day: list[Shown], channel: str
) -> None:
    for shown in posts(day, channel):
        for part in parts(shown):
            words = re.findall(r"[^\W\d_]{2,}", _NOISE.sub(" ", part))
            assert len(words) >= 4, part


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_reminder_restates_the_cause_and_ops_latest_word_with_its_time(
    day: list[Shown], channel: str
) -> None:
    reminders = [
        s
        for s in posts(day, channel, OUTAGE)
        if s.recorded.post.kind is PostKind.REMINDER and s.at > CAUSE_KNOWN
    ]
    assert len(reminders) >= 3
    for shown in reminders:
        text = whole(shown)
        if french(shown):
            assert (
                "Cause\u00a0: le site a perdu ses deux arrivées électriques" in text
            )  # lower case after a colon
            assert re.search(r"Dernier point \(\d+ h( \d\d)?, il y a [^)]+\)\u00a0: ", text)
            assert re.search(
                r"En cours depuis 7 h 23, soit plus d(’une heure|e \d+ heures)( et demie)?\.", text
            )
        else:
            assert "Cause: Both electrical feeds of the site were lost" in text
            assert re.search(r"Latest update \(\d\d:\d\d CET, [^)]+ ago\): ", text)
            assert re.search(
                r"Ongoing since 07:23 CET, over (an hour( and a half)?|\d+( and a half)? hours)\.",
                text,
            )


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_post_never_repeats_the_previous_one_and_stamps_are_rare_and_on_their_own_line(
    day: list[Shown], channel: str
) -> None:
    thread = posts(day, channel, OUTAGE)
    texts = [whole(s) for s in thread]
    assert all(a != b for a, b in pairwise(texts))
    stamped = [p for s in thread for p in parts(s) if "Posted at" in p or "Publié à" in p]
    assert len(stamped) <= len(thread) // 4
    for part in stamped:
        stamp = r"\n(Posted at \d\d:\d\d CET|Publié à \d+ h( \d\d)?)( \(\d+/\d+\))?$"
        assert re.search(stamp, part)


@pytest.mark.parametrize("channel", CHANNELS)
def test_once_known_the_cause_is_in_every_later_post(day: list[Shown], channel: str) -> None:
    later = [s for s in posts(day, channel, OUTAGE) if s.at >= CAUSE_KNOWN]
    cause = "ses deux arrivées électriques" if channel.endswith("fr") else "Both electrical feeds"
    assert later and all(cause in whole(s) for s in later)


@pytest.mark.parametrize("channel", CHANNELS)
def test_the_resolution_restates_cause_duration_data_loss_and_owns_the_impact_once(
    day: list[Shown], channel: str
) -> None:
    thread = posts(day, channel, OUTAGE)
    (resolved,) = [s for s in thread if s.recorded.post.kind is PostKind.RESOLVED]
    text = whole(resolved)
    if french(resolved):
        assert "Rétabli à 17 h 30, après 10 heures et 7 minutes de perturbation." in text
        assert "Aucune perte de données." in text
        assert "analyse détaillée de l’incident d’ici une semaine" in text
        assert "rapport d’incident sera publié" not in text  # ops already said when
        impact = ("perturbe votre activité", "impact sur votre activité")
    else:
        assert "Service restored at 17:30 CET, after 10 hours 7 minutes." in text
        assert "No data was lost." in text
        assert "postmortem within a week" in text
        assert "report will follow" not in text
        impact = ("disrupts your work", "disruption to your work")
    said = [s.recorded.post.kind for s in thread if any(w in whole(s) for w in impact)]
    assert said == [PostKind.OPENED, PostKind.RESOLVED]


@pytest.mark.parametrize("channel", CHANNELS)
def test_the_apology_goes_with_the_data_loss_statement_never_alone_at_the_end(
    day: list[Shown], channel: str
) -> None:
    (resolved,) = [
        s for s in posts(day, channel, OUTAGE) if s.recorded.post.kind is PostKind.RESOLVED
    ]
    if french(resolved):
        line = "Aucune perte de données. Nous sommes désolés pour l’impact sur votre activité."
        last = "Nous publierons une analyse détaillée de l’incident d’ici une semaine."
    else:
        line = "No data was lost. We are sorry for the disruption to your work."
        last = "We will publish a detailed postmortem within a week."
    lines = [re.sub(r" \(\d+/\d+\)$", "", text) for text in whole(resolved).splitlines()]
    assert line in lines  # one line, wherever the thread is cut
    assert re.sub(r" \(\d+/\d+\)$", "", parts(resolved)[-1]).endswith(last)


@pytest.mark.parametrize("channel", CHANNELS)
def test_fallback_words_are_not_said_twice_nor_in_jargon(day: list[Shown], channel: str) -> None:
    for shown in posts(day, channel):
        text = whole(shown)
        for jargon in ("Workaround", "Contournement", "A fix has been applied", "Correctif"):
            assert jargon not in text
        assert text.count("Nous enquêtons") <= 1 and text.count("We are investigating") <= 1


@pytest.mark.parametrize("channel", ["x-fr", "mastodon-fr"])
def test_french_posts_name_services_in_french_and_follow_french_typography(
    day: list[Shown], channel: str
) -> None:
    for shown in posts(day, channel):
        text = whole(shown)
        assert "Dedicated servers" not in text and "Web hosting" not in text
        assert "'" not in re.sub(r"https?://\S+", "", text)  # ops' apostrophes too
        assert not re.search(r" [:;!?%»]|« ", text)  # no ordinary space before them
        post = shown.recorded.post
        if not post.kind.is_final:
            assert ", heure de Paris." in parts(shown)[0]
    outage = posts(day, channel, OUTAGE)
    assert any("Hébergement web, VPS, Serveurs dédiés et Public Cloud" in whole(s) for s in outage)
    assert any("soit plus de 2 heures" in whole(s) for s in outage)  # a duration, not a time
    for shown in posts(day, channel):
        assert whole(shown).count("heure de Paris") <= 1, whole(shown)  # named once


def test_a_channel_filter_matches_names_in_any_language() -> None:
    only_dedicated = ChannelConfig(
        name="x-fr", platform="x", language="fr", services=("Serveurs dédiés",)
    )
    names = Names({"en": ["Dedicated servers"], "fr": ["Serveurs dédiés"]})
    assert only_dedicated.matches("major", names, ())
    assert not only_dedicated.matches("major", Names({"en": ["VPS"], "fr": ["VPS"]}), ())
    english_filter = ChannelConfig(
        name="x-fr", platform="x", language="fr", services=("Dedicated servers",)
    )
    assert english_filter.matches("major", names, ())


@pytest.mark.parametrize("channel", CHANNELS)
def test_the_shipped_day_needs_no_stamp_and_ops_word_stays_whole_unless_that_would_repeat(
    day: list[Shown], channel: str
) -> None:
    # Parts differ in words (the elapsed time, ops' word with its age), not by a stamp.
    every = [part for s in posts(day, channel) for part in parts(s)]
    assert not [part for part in every if "Posted at" in part or "Publié à" in part]
    assert len(every) == len(set(every))
    latest = "Dernier point (" if channel.endswith("fr") else "Latest update ("
    torn = [
        shown.at
        for shown in posts(day, channel, OUTAGE)
        if shown.recorded.post.kind is PostKind.REMINDER
        if not any(latest in part for part in parts(shown)[-1:])  # ops' word runs on
    ]
    # Only where keeping it whole would repeat an earlier reply word for word: the long
    # French monitoring reminders (4 parts on X), at 15:00 and 17:00.
    assert len(torn) <= (2 if channel == "x-fr" else 0), torn
