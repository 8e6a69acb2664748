"""What ops should fix before customers notice: warnings, never errors. Pure.

The posts go out anyway (a warning never blocks an update); ``check`` lists these under
``warnings`` and the daemon logs them once per revision. The 2017 failures they catch:
"Cause identified" with no cause, a major outage with no link to follow, a promise so far
away that it reads as silence, and an English sentence posted to French readers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from .config import CadenceConfig, ChannelConfig, Config
from .model import ALL_LANGUAGES, INCIDENT_FIELDS, FieldKind, Incident, IncidentKind, Localized


@dataclass(frozen=True)
class Advice:
    """One warning about one field of one incident (or of the config, ``incident_id`` None)."""

    incident_id: str | None
    field: str
    message: str

    def __str__(self) -> str:
        if self.incident_id is None:
            return f"{self.field}: {self.message}"
        return f"incident {self.incident_id!r} field {self.field!r}: {self.message}"


def incident_advice(
    incident: Incident,
    channels: Mapping[str, ChannelConfig],
    cadence: CadenceConfig,
    now: datetime,
) -> list[Advice]:
    """Warnings about one incident as its channels would post it at ``now``."""
    if incident.is_final:
        return []  # its last word is said; advice would come too late to matter
    found: list[Advice] = []

    def warn(field: str, message: str) -> None:
        found.append(Advice(incident.id, field, message))

    is_incident = incident.kind is IncidentKind.INCIDENT
    if is_incident and incident.status == "identified" and incident.cause is None:
        warn("cause", "status is identified but no cause is given: say what it is")
    if is_incident and incident.severity in ("major", "critical") and not incident.url:
        warn("url", f"a {incident.severity} incident has no url: give readers a page to follow")
    promised = incident.next_update_at
    if is_incident and promised is not None:
        interval = cadence.interval(incident.status, incident.severity, now - incident.started_at)
        if promised - now > 2 * interval:
            warn(
                "next_update_at",
                f"the next update is {_minutes(promised - now)} away, more than twice the "
                f"cadence ({_minutes(interval)}): readers will think nobody is on it",
            )
    languages = {
        c.language
        for c in channels.values()
        if c.matches(incident.severity, incident.services, incident.regions)
    }
    if len(languages) > 1:
        for name, rule in INCIDENT_FIELDS.items():
            value = getattr(incident, name)
            if rule.kind is not FieldKind.LOCALIZED or not isinstance(value, Localized):
                continue
            fallback = sorted(lang for lang in languages if lang not in value.values)
            if ALL_LANGUAGES in value.values and fallback:
                warn(
                    name,
                    f"one text for every language, posted as is in {', '.join(fallback)}: "
                    "give a table by language",
                )
    return found


def advice(incidents: Iterable[Incident], config: Config, now: datetime) -> list[Advice]:
    """Every warning ``check`` shows: the config's budgets, then each incident's."""
    found = budget_advice(config)
    for incident in incidents:
        found += incident_advice(incident, config.channels, config.cadence, now)
    return found


def budget_advice(config: Config) -> list[Advice]:
    """Budgets that cannot keep the cadence's promises (e.g. X's 17 posts a day)."""
    found: list[Advice] = []
    fastest = min(
        (
            interval
            for by_severity in config.cadence.every.values()
            for interval in by_severity.values()
        ),
        default=None,
    )
    for name, channel in config.channels.items():
        if channel.max_posts is None or fastest is None:
            continue
        posts, window = channel.max_posts
        spacing = window / posts
        if spacing > fastest:
            found.append(
                Advice(
                    None,
                    f"channels.{name}.max_posts",
                    f"{posts} per {_minutes(window)} allows one post every "
                    f"{_minutes(spacing)}, but the fastest cadence is every "
                    f"{_minutes(fastest)}: promises on this channel will be spaced to the "
                    "budget, not the cadence (raise the budget or slow the cadence)",
                )
            )
    return found


def _minutes(delta: timedelta) -> str:
    minutes = delta.total_seconds() / 60
    if minutes >= 120 and minutes % 60 == 0:
        return f"{minutes / 60:.0f} h"
    return f"{minutes:.0f} min"
