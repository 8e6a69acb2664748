"""Templates and the words around them: what customers read during an outage."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broadcaster import i18n
from broadcaster.model import (
    ChannelInfo,
    Incident,
    IncidentKind,
    Localized,
    Names,
    PlannedPost,
    PostKind,
    Snapshot,
)
from broadcaster.render import Renderer, TemplateError, samples_for, tidy

TEMPLATES = Path(__file__).resolve().parents[1] / "message_templates"
PARIS = ZoneInfo("Europe/Paris")
NBSP = "\u00a0"
NNBSP = "\u202f"

X_EN = ChannelInfo("x-en", "x", "en")
X_FR = ChannelInfo("x-fr", "x", "fr")
MASTODON_EN = ChannelInfo("mastodon-en", "mastodon", "en")
MASTODON_FR = ChannelInfo("mastodon-fr", "mastodon", "fr")
CHANNELS = {"en": X_EN, "fr": X_FR}


def at(hour: int, minute: int, day: int = 9) -> datetime:
    return datetime(2017, 11, day, hour, minute, tzinfo=PARIS)


URL = "https://travaux.ovh.net/?do=details&id=28244"
SBG = Incident(
    id="sbg-power",
    title=Localized(
        {"en": "Power outage in Strasbourg (SBG)", "fr": "Coupure électrique à Strasbourg (SBG)"}
    ),
    status="investigating",
    started_at=at(7, 23),
    severity="critical",
    services=Names({"en": ("Dedicated servers", "VPS"), "fr": ("Serveurs dédiés", "VPS")}),
    regions=("SBG",),
    message=Localized(
        {
            "en": "Both power feeds are down and the generators did not start. "
            "Technicians are on site.",
            "fr": "Les deux arrivées électriques sont coupées et les groupes n’ont pas démarré.",
        }
    ),
    url=URL,
)
SBG_IDENTIFIED = replace(
    SBG,
    status="identified",
    cause=Localized(
        {
            "en": "an electrical fault took down both feeds",
            "fr": "un défaut électrique a coupé les deux arrivées",
        }
    ),
    message=Localized(
        {
            "en": "Electricians are restoring power; servers will restart in stages.",
            "fr": "Les électriciens rétablissent le courant ; redémarrage par étapes.",
        }
    ),
    workaround=Localized(
        {
            "en": "Fail over to Roubaix (RBX) if you can.",
            "fr": "Basculez sur Roubaix (RBX) si vous le pouvez.",
        }
    ),
)
SBG_RESOLVED = replace(
    SBG_IDENTIFIED,
    status="resolved",
    resolved_at=at(17, 50),
    data_loss=False,
    message=None,
    workaround=None,
)
MAINTENANCE = Incident(
    id="sbg-network",
    kind=IncidentKind.MAINTENANCE,
    title=Localized({"en": "Network upgrade in SBG", "fr": "Mise à niveau réseau à SBG"}),
    status="scheduled",
    started_at=at(22, 0, 16),
    starts_at=at(22, 0, 16),
    ends_at=at(23, 30, 16),
    services=Names({"en": ("Dedicated servers",), "fr": ("Serveurs dédiés",)}),
    regions=("SBG",),
    message=Localized(
        {
            "en": "Expect two network cuts of under a minute each.",
            "fr": "Deux coupures réseau de moins d’une minute sont à prévoir.",
        }
    ),
)


@pytest.fixture
def renderer() -> Renderer:
    return Renderer(TEMPLATES, PARIS)


def render(
    r: Renderer,
    incident: Incident,
    kind: PostKind,
    now: datetime,
    next_update: datetime | None = None,
    channel: ChannelInfo = X_EN,
    previous_status: str | None = None,
) -> str:
    snapshot = Snapshot(incident, 2, incident.started_at, now, previous_status)
    post = PlannedPost(
        incident.id, channel.name, kind, 2, 2, now, None if kind.is_final else next_update
    )
    return r.render(snapshot, post, channel, now)


def render_at(
    r: Renderer,
    incident: Incident,
    kind: PostKind,
    now: datetime,
    next_update: datetime | None,
    channel: ChannelInfo,
    previous_status: str | None,
    changed_at: datetime,
) -> str:
    """``render``, with ops' last change at ``changed_at`` (what "Latest update" quotes)."""
    snapshot = Snapshot(incident, 2, incident.started_at, changed_at, previous_status)
    post = PlannedPost(
        incident.id, channel.name, kind, 2, 2, now, None if kind.is_final else next_update
    )
    return r.render(snapshot, post, channel, now)


# Every kind as the planner uses it: (kind, incident, now, next update, previous status).
STORY = {
    PostKind.OPENED: (SBG, at(7, 28), at(7, 45), None),
    PostKind.UPDATE: (SBG_IDENTIFIED, at(8, 40), at(9, 10), "investigating"),
    PostKind.REMINDER: (SBG_IDENTIFIED, at(9, 38), at(10, 8), "identified"),
    PostKind.RESOLVED: (SBG_RESOLVED, at(17, 55), None, "identified"),
    PostKind.SCHEDULED: (MAINTENANCE, at(10, 0), at(21, 0, 16), None),
    PostKind.STARTED: (
        replace(MAINTENANCE, status="in_progress"),
        at(22, 1, 16),
        at(23, 30, 16),
        "scheduled",
    ),
    PostKind.COMPLETED: (
        replace(MAINTENANCE, status="completed", resolved_at=at(23, 10, 16), data_loss=False),
        at(23, 12, 16),
        None,
        "in_progress",
    ),
}

EXPECTED = {
    ("en", PostKind.OPENED): [
        "🔴 Incident: Power outage in Strasbourg (SBG)",
        "Affected since 07:23 CET: Dedicated servers and VPS in SBG.",
        "Next update by 07:45 CET.",
        URL,
        "Technicians are on site.",
        "We know this outage disrupts your work.",
    ],
    ("fr", PostKind.OPENED): [
        f"🔴 Incident en cours{NBSP}: Coupure électrique à Strasbourg (SBG)",
        f"Services concernés depuis 7 h 23{NBSP}: Serveurs dédiés et VPS (SBG).",
        "Prochain point à 7 h 45, heure de Paris.",
        URL,
        "Nous savons que cette panne perturbe votre activité.",
    ],
    ("en", PostKind.UPDATE): [
        "🔴 Cause identified: Power outage in Strasbourg (SBG)",
        "Cause: an electrical fault took down both feeds.",
        "What you can do: Fail over to Roubaix (RBX) if you can.",
        "Next update by 09:10 CET.",
    ],
    ("fr", PostKind.UPDATE): [
        f"🔴 Cause identifiée{NBSP}: Coupure électrique à Strasbourg (SBG)",
        f"Cause{NBSP}: un défaut électrique a coupé les deux arrivées.",
        f"Ce que vous pouvez faire{NBSP}: basculez",
        "Prochain point à 9 h 10, heure de Paris.",
    ],
    ("en", PostKind.REMINDER): [
        "Cause identified: Power outage",
        "Ongoing since 07:23 CET, over 2 hours.",
        "Cause: an electrical fault took down both feeds.",
        "Latest update (09:08 CET, 30 minutes ago): Electricians are restoring power",
        "Next update by 10:08 CET.",
    ],
    ("fr", PostKind.REMINDER): [
        f"Cause identifiée{NBSP}: Coupure",
        "En cours depuis 7 h 23, soit plus de 2 heures.",
        f"Dernier point (9 h 08, il y a 30 minutes){NBSP}: les électriciens",
        "Prochain point à 10 h 08, heure de Paris.",
    ],
    ("en", PostKind.RESOLVED): [
        "✅ Resolved: Power outage in Strasbourg (SBG)",
        "Service restored at 17:50 CET, after 10 hours 27 minutes.",
        "Cause: an electrical fault took down both feeds.",
        "No data was lost.",
        "A post-incident report will follow.",
        "We are sorry for the disruption to your work.",
    ],
    ("fr", PostKind.RESOLVED): [
        f"✅ Service rétabli{NBSP}: Coupure électrique",
        "Rétabli à 17 h 50, après 10 heures et 27 minutes de perturbation.",
        f"Cause{NBSP}: un défaut électrique a coupé les deux arrivées.",
        "Aucune perte de données.",
        "Un rapport d’incident sera publié.",
    ],
    ("en", PostKind.SCHEDULED): [
        "🔧 Scheduled maintenance: Network upgrade in SBG",
        "Planned on Thu 16 Nov from 22:00 to 23:30 CET.",
        "Affected: Dedicated servers in SBG.",
        "Expect two network cuts",
        "Next update by Thu 16 Nov, 21:00 CET.",
    ],
    ("fr", PostKind.SCHEDULED): [
        f"🔧 Maintenance planifiée{NBSP}: Mise à niveau réseau à SBG",
        "Intervention prévue le jeudi 16 novembre de 22 h à 23 h 30, heure de Paris.",
        "Prochain point le jeudi 16 novembre à 21 h.",  # the zone was named once, above
    ],
    ("en", PostKind.STARTED): [
        "🔧 Maintenance started: Network upgrade in SBG",
        "Expected to last until 23:30 CET.",
        "Next update by 23:30 CET.",
    ],
    ("fr", PostKind.STARTED): [
        f"🔧 Début de la maintenance{NBSP}: Mise",
        "Fin prévue à 23 h 30.",
        "Prochain point à 23 h 30, heure de Paris.",
    ],
    ("en", PostKind.COMPLETED): [
        "✅ Maintenance completed: Network upgrade in SBG",
        "Finished at 23:10 CET, after 1 hour 10 minutes.",
        "No data was lost.",
    ],
    ("fr", PostKind.COMPLETED): [
        f"✅ Maintenance terminée{NBSP}: Mise",
        "Fin à 23 h 10, après 1 heure et 10 minutes d’intervention.",
        "Aucune perte de données.",
    ],
}


@pytest.mark.parametrize("language", ["en", "fr"])
@pytest.mark.parametrize("kind", list(PostKind))
def test_every_kind_renders_in_both_languages(renderer: Renderer, kind: PostKind, language: str):
    incident, now, next_update, previous = STORY[kind]
    changed = now - timedelta(minutes=30)
    channel = CHANNELS[language]
    text = render_at(renderer, incident, kind, now, next_update, channel, previous, changed)
    for expected in EXPECTED[(language, kind)]:
        assert expected in text, f"{expected!r} not in:\n{text}"
    assert "None" not in text
    assert text == tidy(text)
    if language == "fr":
        assert not any(word in text for word in ("Next update", "Affected", "Resolved"))
        assert "Dedicated servers" not in text and "'" not in text


@pytest.mark.parametrize("kind", list(PostKind))
def test_a_channel_with_include_url_off_never_shows_the_status_page_link(
    renderer: Renderer, kind: PostKind
):
    incident, now, next_update, previous = STORY[kind]
    incident = replace(incident, url=URL)
    for channel in (X_EN, X_FR):
        linked = render(renderer, incident, kind, now, next_update, channel, previous)
        unlinked = render(
            renderer,
            incident,
            kind,
            now,
            next_update,
            replace(channel, include_url=False),
            previous,
        )
        assert URL in linked
        assert URL not in unlinked and "None" not in unlinked and unlinked == tidy(unlinked)


@pytest.mark.parametrize("kind", list(PostKind))
def test_promise_in_every_non_final_post_and_absent_from_final_ones(
    renderer: Renderer, kind: PostKind
):
    incident, now, next_update, previous = STORY[kind]
    for channel in (X_EN, X_FR):
        text = render(renderer, incident, kind, now, next_update, channel, previous)
        if kind.is_final:
            assert "Next update" not in text and "Prochain point" not in text
        else:
            assert next_update is not None
            assert i18n.clock(next_update, channel.language) in text


def test_reminders_at_two_times_differ(renderer: Renderer):
    # Ops last wrote at 09:38; the reminders at 09:38 and 10:08 say it in words.
    first = render(renderer, SBG_IDENTIFIED, PostKind.REMINDER, at(9, 38), at(10, 8))
    second = render_at(
        renderer, SBG_IDENTIFIED, PostKind.REMINDER, at(10, 8), at(10, 38), X_EN, None, at(9, 38)
    )
    assert first != second
    assert "Ongoing since 07:23 CET, over 2 hours." in first
    assert "Latest update (09:38 CET, just now)" in first
    assert "Latest update (09:38 CET, 30 minutes ago)" in second
    assert "Next update by 10:38 CET." in second


def test_reminder_restates_status_scope_and_work_never_an_empty_still_ongoing(renderer: Renderer):
    text = render(
        renderer, replace(SBG, message=None), PostKind.REMINDER, at(8, 8), at(8, 23), channel=X_EN
    )
    assert text.splitlines() == [
        "🔴 Investigating: Power outage in Strasbourg (SBG)",
        "Affected: Dedicated servers and VPS in SBG.",
        "Next update by 08:23 CET.",
        URL,
        "Ongoing since 07:23 CET, 45 minutes.",
        "We are looking for the origin of the problem.",
    ]


def test_maintenance_reminder_before_start_and_while_running(renderer: Renderer):
    before = render(renderer, MAINTENANCE, PostKind.REMINDER, at(21, 0, 16), at(22, 0, 16))
    assert "Reminder – scheduled maintenance: Network upgrade in SBG" in before
    assert "Starts at 22:00 CET, in an hour; expected to last until 23:30 CET." in before
    running = replace(MAINTENANCE, status="in_progress")
    late = render(renderer, running, PostKind.REMINDER, at(23, 40, 16), at(0, 10, 17), X_FR)
    assert "En cours depuis 22 h, soit plus d’une heure et demie." in late
    assert f"Plus longue que prévu{NBSP}: la fin était annoncée à 23 h 30." in late
    assert "Prochain point le vendredi 17 novembre à 0 h 10, heure de Paris." in late


def test_update_leads_with_what_changed(renderer: Renderer):
    monitoring = replace(SBG_IDENTIFIED, status="monitoring")
    text = render(
        renderer, monitoring, PostKind.UPDATE, at(12, 0), at(13, 0), previous_status="identified"
    )
    assert text.splitlines()[0] == "🟠 Monitoring: Power outage in Strasbourg (SBG)"
    assert "Service is coming back; we are checking that it stays stable." in text
    reopened = render(
        renderer,
        replace(SBG, status="investigating"),
        PostKind.UPDATE,
        at(19, 0),
        at(19, 15),
        X_FR,
        previous_status="resolved",
    )
    assert f"Le problème est réapparu{NNBSP}; nous reprenons l’analyse." in reopened
    same = render(renderer, SBG, PostKind.UPDATE, at(7, 40), at(7, 55), previous_status=SBG.status)
    # The head says where things stand; ops' word follows it.
    assert same.splitlines()[4].startswith("Both power feeds are down")


def test_elapsed_is_real_time_across_a_dst_change(renderer: Renderer):
    # Clocks went back at 03:00 CEST on 29 Oct 2017: 01:30 CEST to 03:30 CET is 3 hours.
    started = datetime(2017, 10, 29, 1, 30, tzinfo=PARIS)
    now = (started.astimezone(UTC) + timedelta(hours=3)).astimezone(PARIS)
    incident = replace(SBG, started_at=started, message=None)
    text = render(renderer, incident, PostKind.REMINDER, now, now + timedelta(minutes=15))
    assert "Ongoing since 01:30 CEST, 3 hours." in text
    maintenance = replace(
        MAINTENANCE,
        status="in_progress",
        starts_at=started,
        started_at=started,
        ends_at=started + timedelta(hours=5),
    )
    text = render(renderer, maintenance, PostKind.REMINDER, now, now + timedelta(minutes=15))
    assert "Under way since 01:30 CEST, 3 hours." in text


@pytest.mark.parametrize(
    ("data_loss", "url", "en", "fr"),
    [
        (False, URL, "No data was lost.", "Aucune perte de données."),
        (
            True,
            URL,
            "Some data was lost: details at the link above.",
            f"Des données ont été perdues{NBSP}: détails sur le lien ci-dessus.",
        ),
        (True, None, "Some data was lost.", "Des données ont été perdues."),
    ],
)
def test_data_loss_is_stated_explicitly(
    renderer: Renderer, data_loss: bool, url: str | None, en: str, fr: str
):
    incident = replace(SBG_RESOLVED, data_loss=data_loss, url=url)
    assert en in render(renderer, incident, PostKind.RESOLVED, at(18, 0))
    assert fr in render(renderer, incident, PostKind.RESOLVED, at(18, 0), channel=X_FR)


def test_unknown_data_loss_is_not_mentioned_and_postmortem_is_linked(renderer: Renderer):
    incident = replace(SBG_RESOLVED, data_loss=None, postmortem_url="https://ovh.example/pm/1")
    text = render(renderer, incident, PostKind.RESOLVED, at(18, 0))
    assert "data" not in text
    assert "Post-incident report: https://ovh.example/pm/1" in text
    assert "will follow" not in text


def test_incident_text_is_data_never_template_code(renderer: Renderer):
    sneaky = "{{ 7*7 }} {% for x in range(3) %}{{ x }}{% endfor %} {# hidden #}"
    incident = replace(SBG, title=Localized.of("{{ incident.id }}"), message=Localized.of(sneaky))
    for channel in (X_EN, X_FR):
        text = render(renderer, incident, PostKind.OPENED, at(7, 30), at(7, 45), channel)
        assert sneaky in text
        assert "{{ incident.id }}" in text
        assert "49" not in text


# -- French typography ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Statut: OK", f"Statut{NBSP}: OK"),
        ("Statut : OK", f"Statut{NBSP}: OK"),
        (f"Statut{NBSP}: OK", f"Statut{NBSP}: OK"),
        (
            "Pourquoi? Parce que! Voilà; fini",
            f"Pourquoi{NNBSP}? Parce que{NNBSP}! Voilà{NNBSP}; fini",
        ),
        ("Vraiment ?!", f"Vraiment{NNBSP}?!"),
        ("Fin:", f"Fin{NBSP}:"),
        (
            "Détails : https://status.example.com/a?b=1:2#x!",
            f"Détails{NBSP}: https://status.example.com/a?b=1:2#x!",
        ),
        ("Voir https://x.fr/?q=a; puis", "Voir https://x.fr/?q=a; puis"),
        ("Lien: http://x.fr/a : ok", f"Lien{NBSP}: http://x.fr/a{NBSP}: ok"),
        ("www.ovh.com/fr?x=1 ok", "www.ovh.com/fr?x=1 ok"),
        ("à 10:30 et 10 h 30", "à 10:30 et 10 h 30"),
        ("adresse fe80::1 ici", "adresse fe80::1 ici"),
        ("mailto:ops@example.com", "mailto:ops@example.com"),
        (":) au début", ":) au début"),
        ("a\n: b", "a\n: b"),
        ("30% des paiements, 30 % des cartes", f"30{NBSP}% des paiements, 30{NBSP}% des cartes"),
        ("« merci »", f"«{NBSP}merci{NBSP}»"),
        ("«merci»", f"«{NBSP}merci{NBSP}»"),
        ("n'est pas l'heure d'aujourd'hui", "n’est pas l’heure d’aujourd’hui"),
        ("voir https://x.fr/l'a?d'b=1 puis l'aide", "voir https://x.fr/l'a?d'b=1 puis l’aide"),
        ("l'« aide »", f"l’«{NBSP}aide{NBSP}»"),
    ],
)
def test_french_typography(raw: str, expected: str):
    assert i18n.french_typography(raw) == expected
    assert i18n.french_typography(expected) == expected  # idempotent


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "a",
                "l'",
                "10",
                ":",
                ";",
                "?",
                "!",
                "%",
                "«",
                "»",
                " ",
                "\t",
                NBSP,
                "\n",
                "https://x.fr/a?b",
                "www.x.fr",
                "'",
                "é",
                ")",
                ".",
            ]
        ),
        max_size=25,
    )
)
def test_french_typography_line_by_line_is_the_typography_of_the_whole_text(pieces: list[str]):
    # The pass remembers each line's result: that must be the whole text's result.
    text = "".join(pieces)
    assert i18n.french_typography(text) == i18n._TYPOGRAPHY.sub(i18n._typography_sub, text)


def test_french_posts_get_french_spaces_but_urls_are_untouched(renderer: Renderer):
    text = render(
        renderer, SBG_IDENTIFIED, PostKind.UPDATE, at(8, 40), at(9, 10), X_FR, "investigating"
    )
    assert f"Cause identifiée{NBSP}:" in text
    assert f"rétablissent le courant{NNBSP}; redémarrage" in text
    assert URL in text
    assert f"https{NBSP}:" not in text
    assert " :" not in text and " ;" not in text
    english = render(
        renderer, SBG_IDENTIFIED, PostKind.UPDATE, at(8, 40), at(9, 10), X_EN, "investigating"
    )
    assert NBSP not in english and NNBSP not in english


# -- filters ----------------------------------------------------------------------------------


def test_clock():
    assert i18n.clock(at(10, 30), "en") == "10:30 CET"
    assert i18n.clock(at(7, 5), "en") == "07:05 CET"
    assert i18n.clock(datetime(2017, 7, 9, 10, 30, tzinfo=PARIS), "en") == "10:30 CEST"
    assert i18n.clock(at(10, 30), "fr") == "10 h 30"
    assert i18n.clock(at(7, 5), "fr") == "7 h 05"
    assert i18n.clock(at(11, 0), "fr") == "11 h"
    assert i18n.clock(at(0, 20), "fr") == "0 h 20"
    # Outside Paris time the zone is named in French too: "10 h 30" must never hide UTC.
    assert i18n.clock(datetime(2017, 11, 9, 10, 30, tzinfo=UTC), "fr") == "10 h 30 UTC"
    assert i18n.clock(at(10, 30), "de") == "10:30 CET"  # unknown languages fall back to English


def test_when_across_midnight_and_days():
    now = at(23, 40)
    assert i18n.when(at(23, 55), now, "en") == "23:55 CET"
    assert i18n.when(at(0, 25, 10), now, "en") == "Fri 10 Nov, 00:25 CET"
    assert i18n.when(at(0, 25, 10), now, "fr") == "vendredi 10 novembre à 0 h 25"
    assert i18n.when(at(10, 30), at(8, 0), "fr") == "10 h 30"
    first = at(10, 30, 1).replace(month=12)
    assert i18n.when(first, now, "fr") == "vendredi 1er décembre à 10 h 30"
    # Far dates carry their year: "Sun 10 Mar" alone could be either year.
    assert i18n.when(datetime(2030, 3, 10, 22, 0, tzinfo=PARIS), now, "en") == (
        "Sun 10 Mar 2030, 22:00 CET"
    )
    assert i18n.at(datetime(2030, 3, 10, 22, 0, tzinfo=PARIS), now, "fr") == (
        "le dimanche 10 mars 2030 à 22 h"
    )
    # "Today" is the local day: 23:30 UTC on the 9th is already the 10th in Paris.
    assert i18n.when(datetime(2017, 11, 9, 23, 30, tzinfo=UTC).astimezone(PARIS), now, "en") == (
        "Fri 10 Nov, 00:30 CET"
    )


def test_prepositional_time_filters():
    now = at(9, 0)
    assert i18n.at(at(10, 30), now, "en") == "at 10:30 CET"
    assert i18n.at(at(10, 30, 10), now, "en") == "on Fri 10 Nov at 10:30 CET"
    assert i18n.at(at(10, 30), now, "fr") == "à 10 h 30"
    assert i18n.at(at(10, 30, 10), now, "fr") == "le vendredi 10 novembre à 10 h 30"
    assert i18n.since(at(7, 23), now, "fr") == "depuis 7 h 23"
    assert i18n.since(at(7, 23, 8), now, "fr") == "depuis le mercredi 8 novembre à 7 h 23"
    assert i18n.until(at(23, 30), now, "fr") == "jusqu’à 23 h 30"
    assert i18n.until(at(1, 0, 10), now, "fr") == "jusqu’au vendredi 10 novembre à 1 h"
    assert i18n.until(at(1, 0, 10), now, "en") == "until Fri 10 Nov, 01:00 CET"


def test_window():
    now = at(9, 0)
    assert i18n.window(at(22, 0), at(23, 30), now, "en") == "from 22:00 to 23:30 CET"
    assert i18n.window(at(22, 0), at(23, 30), now, "fr") == "de 22 h à 23 h 30"
    assert i18n.window(at(22, 0, 16), at(23, 30, 16), now, "fr") == (
        "le jeudi 16 novembre de 22 h à 23 h 30"
    )
    assert i18n.window(at(23, 0), at(3, 0, 10), now, "en") == (
        "from Thu 9 Nov, 23:00 CET to Fri 10 Nov, 03:00 CET"
    )
    assert i18n.window(at(23, 0), at(3, 0, 10), now, "fr") == (
        "du jeudi 9 novembre à 23 h au vendredi 10 novembre à 3 h"
    )
    assert i18n.window(at(22, 0), None, now, "fr") == "à partir de 22 h"
    # The night clocks go back, both zones are named.
    night = datetime(2017, 10, 29, 1, 0, tzinfo=PARIS)
    later = (night.astimezone(UTC) + timedelta(hours=3)).astimezone(PARIS)
    assert i18n.window(night, later, night, "en") == ("from 01:00 CEST to 03:00 CET")


@pytest.mark.parametrize(
    ("delta", "en", "fr"),
    [
        (timedelta(hours=2, minutes=15), "2 hours 15 minutes", "2 heures et 15 minutes"),
        (timedelta(hours=1, minutes=1), "1 hour 1 minute", "1 heure et 1 minute"),
        (timedelta(minutes=45), "45 minutes", "45 minutes"),
        (timedelta(hours=3), "3 hours", "3 heures"),
        (timedelta(days=3, hours=4, minutes=10), "3 days 4 hours", "3 jours et 4 heures"),
        (timedelta(days=1), "1 day", "1 jour"),
        (timedelta(seconds=20), "less than a minute", "moins d’une minute"),
        (timedelta(minutes=-5), "less than a minute", "moins d’une minute"),
    ],
)
def test_duration(delta: timedelta, en: str, fr: str):
    assert i18n.duration(delta, "en") == en
    assert i18n.duration(delta, "fr") == fr


def test_join_and():
    assert i18n.join_and(["A", "B", "C"], "en") == "A, B and C"
    assert i18n.join_and(["A", "B", "C"], "fr") == "A, B et C"
    assert i18n.join_and(["A", "B"], "fr-CA") == "A et B"
    assert i18n.join_and(["A"], "en") == "A"
    assert i18n.join_and([], "en") == ""


@pytest.mark.parametrize(
    ("minutes", "en", "fr"),
    [
        (0, "less than a minute", "moins d’une minute"),
        (1, "1 minute", "1 minute"),
        (45, "45 minutes", "45 minutes"),
        (60, "an hour", "une heure"),
        (75, "over an hour", "plus d’une heure"),
        (7 * 60 + 15, "over 7 hours", "plus de 7 heures"),
        (24 * 60, "a day", "un jour"),
        (50 * 60, "over 2 days", "plus de 2 jours"),
    ],
)
def test_rough_durations_are_words_never_mistaken_for_clock_times(minutes: int, en: str, fr: str):
    assert i18n.rough(timedelta(minutes=minutes), "en") == en
    assert i18n.rough(timedelta(minutes=minutes), "fr") == fr


def test_ago_and_the_zone_said_once_in_french():
    assert i18n.ago(at(10, 55), at(11, 35), "en") == "40 minutes ago"
    assert i18n.ago(at(10, 55), at(11, 35), "fr") == "il y a 40 minutes"
    assert i18n.ago(at(10, 55), at(10, 55), "fr") == "à l’instant"
    assert i18n.zone_words(at(13, 0), "fr") == ", heure de Paris"
    assert i18n.zone_words(at(13, 0), "en") == ""  # English names it in every clock: CET
    assert i18n.zone_words(at(13, 0).astimezone(UTC), "fr") == ""  # the clock says "UTC"
    brussels = at(13, 0).astimezone(ZoneInfo("Europe/Berlin"))
    assert i18n.zone_words(brussels, "fr") == ", heure d’Europe centrale"


def test_eta_is_in_every_non_final_post_and_reminders_quote_ops_with_its_time(
    renderer: Renderer,
):
    eta = replace(SBG_IDENTIFIED, eta=at(14, 0))
    for kind, now, promise in (
        (PostKind.OPENED, at(7, 28), at(7, 45)),
        (PostKind.UPDATE, at(8, 40), at(9, 10)),
        (PostKind.REMINDER, at(9, 38), at(10, 8)),
    ):
        en = render_at(renderer, eta, kind, now, promise, X_EN, "identified", at(8, 40))
        fr = render_at(renderer, eta, kind, now, promise, X_FR, "identified", at(8, 40))
        assert "Expected recovery at 14:00 CET." in en
        assert "Rétablissement prévu à 14 h." in fr
    assert "Latest update (08:40 CET, 58 minutes ago): Electricians" in en
    assert f"Dernier point (8 h 40, il y a 58 minutes){NBSP}: les électriciens" in fr
    over = replace(eta, status="resolved", resolved_at=at(13, 40))
    assert "14:00" not in render(renderer, over, PostKind.RESOLVED, at(13, 45))


def test_identified_without_a_cause_claims_no_cause_and_says_what_customers_get(
    renderer: Renderer,
):
    no_cause = replace(SBG_IDENTIFIED, cause=None, message=None)
    en = render(renderer, no_cause, PostKind.UPDATE, at(8, 40), at(9, 10), X_EN, "investigating")
    fr = render(renderer, no_cause, PostKind.UPDATE, at(8, 40), at(9, 10), X_FR, "investigating")
    assert "We are working to restore service." in en and "Cause:" not in en
    assert "Nous travaillons au rétablissement du service." in fr and "Cause " not in fr


def test_the_resolution_says_when_the_report_comes_unless_ops_did(renderer: Renderer):
    said = replace(
        SBG_RESOLVED,
        message=Localized(
            {"en": "Postmortem within a week.", "fr": "Analyse détaillée d’ici une semaine."}
        ),
    )
    assert "will follow" not in render(renderer, said, PostKind.RESOLVED, at(18, 0))
    assert "sera publié" not in render(renderer, said, PostKind.RESOLVED, at(18, 0), None, X_FR)
    assert "A post-incident report will follow." in render(
        renderer, SBG_RESOLVED, PostKind.RESOLVED, at(18, 0)
    )


def test_minor_incidents_do_not_dwell_on_impact(renderer: Renderer):
    minor = replace(SBG, severity="minor")
    text = render(renderer, minor, PostKind.OPENED, at(7, 28), at(7, 45))
    assert "disrupt" not in text and text.startswith("🟠")


def test_french_lowers_a_common_word_after_a_colon_but_never_a_proper_noun():
    assert i18n.after_colon("Le site a perdu", "fr") == "le site a perdu"
    assert i18n.after_colon("L’alimentation", "fr") == "l’alimentation"
    assert i18n.after_colon("Strasbourg est touché", "fr") == "Strasbourg est touché"
    assert i18n.after_colon("OVH redémarre", "fr") == "OVH redémarre"
    assert i18n.after_colon("Le site", "en") == "Le site"


def test_labels():
    assert i18n.status_label("identified", "fr") == "Cause identifiée"
    assert i18n.status_label("in_progress", "en") == "In progress"
    assert i18n.status_label("weird_state", "en") == "Weird state"
    assert i18n.severity_label("critical", "fr") == "Critique"


def test_filters_are_available_to_templates(tmp_path: Path):
    (tmp_path / "fr").mkdir()
    (tmp_path / "fr" / "opened.j2").write_text(
        "{{ incident.started_at|clock }}|{{ next_update|when }}|{{ elapsed|duration }}|"
        "{{ incident.services|join_and }}|{{ next_update|at }}|{{ incident.started_at|since }}|"
        "{{ 'oui' if next_update is today else 'non' }}|{{ incident.status|status_label }}\n"
    )
    r = Renderer(tmp_path, PARIS)
    text = render(r, SBG, PostKind.OPENED, at(23, 40), at(0, 25, 10), X_FR)
    assert text == (
        "7 h 23|vendredi 10 novembre à 0 h 25|16 heures et 17 minutes|Serveurs dédiés et VPS|"
        "le vendredi 10 novembre à 0 h 25|depuis 7 h 23|non|Analyse en cours"
    )


# -- template lookup and errors ---------------------------------------------------------------


def write(root: Path, name: str, text: str) -> Path:
    path = root / "templates" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_platform_override_wins_over_the_language_default(tmp_path: Path):
    write(tmp_path, "en/opened.j2", "default {{ next_update|clock }}")
    write(tmp_path, "en/mastodon/opened.j2", "mastodon {{ next_update|clock }}")
    r = Renderer(tmp_path / "templates", PARIS)
    path = r.template_path("en", "mastodon", PostKind.OPENED)
    assert path.parts[-2:] == ("mastodon", "opened.j2")
    assert r.template_path("en", "x", PostKind.OPENED).parts[-2:] == ("en", "opened.j2")
    now, promised = at(7, 30), at(7, 45)
    assert render(r, SBG, PostKind.OPENED, now, promised, MASTODON_EN) == "mastodon 07:45 CET"
    assert render(r, SBG, PostKind.OPENED, now, promised, X_EN) == "default 07:45 CET"


def test_missing_template_is_a_template_error(tmp_path: Path):
    (tmp_path / "templates" / "en").mkdir(parents=True)
    r = Renderer(tmp_path / "templates", PARIS)
    with pytest.raises(TemplateError) as e:
        r.template_path("en", "x", PostKind.OPENED)
    assert e.value.path == "templates/en/opened.j2"
    assert "templates/en/x/opened.j2" in str(e.value)
    with pytest.raises(TemplateError):
        r.template_path("../en", "x", PostKind.OPENED)


@pytest.mark.parametrize(
    ("body", "line", "words"),
    [
        ("ok\n{% if %}\n", 2, "syntax error"),
        ("line one\n{{ incident.titel }}\n", 2, "titel"),
        ("a\nb\n{{ ''.__class__.__mro__ }}\n", 3, "not allowed"),
        ("{{ incident.cause }}\n", 1, "printed None"),
        ("x\n{{ incident.started_at|duration }}\n", 2, "AttributeError"),
    ],
    ids=["syntax", "undefined", "sandbox", "none", "filter"],
)
def test_broken_templates_name_file_and_line(tmp_path: Path, body: str, line: int, words: str):
    write(tmp_path, "en/opened.j2", body)
    r = Renderer(tmp_path / "templates", PARIS)
    with pytest.raises(TemplateError) as e:
        render(r, SBG, PostKind.OPENED, at(7, 30), at(7, 45))
    assert e.value.path == "templates/en/opened.j2"
    assert e.value.line == line
    assert words in e.value.message
    assert str(e.value).startswith(f"templates/en/opened.j2:{line}: ")


def test_errors_in_imported_templates_name_that_file(tmp_path: Path):
    write(tmp_path, "en/_parts.j2", "{% macro scope() %}\n{{ nope }}\n{% endmacro %}\n")
    write(
        tmp_path, "en/opened.j2", '{% import "en/_parts.j2" as p with context %}\n{{ p.scope() }}\n'
    )
    r = Renderer(tmp_path / "templates", PARIS)
    with pytest.raises(TemplateError) as e:
        render(r, SBG, PostKind.OPENED, at(7, 30), at(7, 45))
    assert (e.value.path, e.value.line) == ("templates/en/_parts.j2", 2)


def test_output_is_tidied(tmp_path: Path):
    write(tmp_path, "en/opened.j2", "\n\nA   \n\n\n\nB\t\n  C\n\n")
    r = Renderer(tmp_path / "templates", PARIS)
    assert render(r, SBG, PostKind.OPENED, at(7, 30), at(7, 45)) == "A\n\nB\n  C"


def test_reload_reads_edited_templates(tmp_path: Path):
    path = write(tmp_path, "en/opened.j2", "first")
    r = Renderer(tmp_path / "templates", PARIS)
    assert render(r, SBG, PostKind.OPENED, at(7, 30), at(7, 45)) == "first"
    path.write_text("second")
    r.reload()
    assert render(r, SBG, PostKind.OPENED, at(7, 30), at(7, 45)) == "second"


# -- check ------------------------------------------------------------------------------------


def test_check_passes_for_the_shipped_templates(renderer: Renderer):
    channels = [X_EN, X_FR, MASTODON_EN, MASTODON_FR]
    assert [str(p) for p in renderer.check(channels)] == []


def test_check_covers_every_kind_with_samples():
    for kind in PostKind:
        samples = samples_for(kind)
        assert samples
        assert all((s.next_update is None) == kind.is_final for s in samples)


def shipped_copy(tmp_path: Path) -> Path:
    root = tmp_path / "message_templates"
    shutil.copytree(TEMPLATES, root)
    return root


def test_check_flags_a_non_final_template_that_breaks_the_promise(tmp_path: Path):
    root = shipped_copy(tmp_path)
    (root / "fr" / "reminder.j2").write_text("🔴 {{ incident.title }} : toujours en cours.\n")
    problems = Renderer(root, PARIS).check([X_EN, X_FR])
    assert len(problems) == 1
    assert problems[0].path == "message_templates/fr/reminder.j2"
    assert "next update" in problems[0].message


def test_the_head_block_comes_first_and_its_end_is_reported(tmp_path: Path):
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "opened.j2").write_text(
        '{% set who = "ops" %}\nIntro by {{ who }}\n'
        "{% block head %}\nHead by {{ who }}, next {{ next_update|when }}\n{% endblock %}\n"
        "Body\n"
    )
    r = Renderer(tmp_path, PARIS)
    snapshot = Snapshot(SBG, 2, SBG.started_at, at(7, 30), None)
    post = PlannedPost(SBG.id, "x-en", PostKind.OPENED, 2, 1, at(7, 30), at(7, 45))
    rendered = r.render_post(snapshot, post, X_EN, at(7, 30))
    assert rendered.text == "Head by ops, next 07:45 CET\nIntro by ops\nBody"
    assert rendered.text[: rendered.head] == "Head by ops, next 07:45 CET"
    (tmp_path / "en" / "opened.j2").write_text("No head {{ next_update|when }}\n")
    r.reload()
    assert r.render_post(snapshot, post, X_EN, at(7, 30)).head == 0


def test_check_flags_a_head_that_leaves_the_promise_to_a_reply(tmp_path: Path):
    root = tmp_path / "templates"
    shutil.copytree(TEMPLATES, root)
    (root / "en" / "x").mkdir()
    (root / "en" / "x" / "reminder.j2").write_text(
        "{% block head %}{{ incident.title }}{% endblock %}\n"
        "Next update by {{ next_update|when }}.\n"
    )
    problems = Renderer(root, PARIS).check([X_EN])
    assert problems and all("reminder.j2" in str(p) for p in problems)
    assert "must be in the {% block head %}" in str(problems[0])


def test_check_reports_every_problem_not_just_the_first(tmp_path: Path):
    root = shipped_copy(tmp_path)
    (root / "en" / "opened.j2").write_text("{% if %}")
    (root / "en" / "resolved.j2").write_text("ok\n{{ incident.nope }}")
    (root / "fr" / "scheduled.j2").unlink()
    problems = Renderer(root, PARIS).check([X_EN, MASTODON_EN, X_FR])
    where = sorted((p.path, p.line) for p in problems)
    assert where == [
        ("message_templates/en/opened.j2", 1),
        ("message_templates/en/resolved.j2", 2),
        ("message_templates/fr/scheduled.j2", None),
    ]


def test_check_reports_a_language_without_templates(renderer: Renderer):
    problems = renderer.check([ChannelInfo("x-de", "x", "de")])
    assert len(problems) == len(PostKind)
    assert all(p.path.startswith("message_templates/de/") for p in problems)
