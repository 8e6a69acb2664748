"""Events from queues (spool directory, Redis Streams, HTTP): partial incident updates.

An event is one JSON object with an incident's ``id`` and any of the state file's fields.
It creates the incident, or updates it: fields the event does not carry stay as they were.
The result is validated by the same checks as a state-file entry, so a bad event is refused
with the same precise messages and nothing half-applied reaches the store.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any

from .model import ID_FIELD, Incident
from .statefile import Problem, StateFileError, parse_incident
from .store import DataStore

MAX_EVENT_BYTES = 64 * 1024


class EventError(StateFileError):
    """A refused event; ``str()`` names the source, the incident and the field."""


def decode(raw: bytes | str, *, origin: str) -> dict[str, Any]:
    """Parse an event's JSON; refuse anything that is not one JSON object."""
    if isinstance(raw, bytes) and len(raw) > MAX_EVENT_BYTES:
        raise EventError(
            [Problem(origin, None, None, None, f"event larger than {MAX_EVENT_BYTES} bytes")]
        )
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        line = getattr(e, "lineno", None)
        raise EventError([Problem(origin, line, None, None, f"invalid JSON: {e}")]) from None
    if not _encodable(data):
        raise EventError(
            [
                Problem(
                    origin,
                    None,
                    data.get(ID_FIELD) if isinstance(data, dict) else None,
                    None,
                    "text with an invalid character (a lone surrogate "
                    "such as \\ud800): not valid Unicode, cannot be posted",
                )
            ]
        )
    if not isinstance(data, dict):
        raise EventError(
            [Problem(origin, None, None, None, "an event must be one JSON object with an 'id'")]
        )
    return data


def merge(
    store: DataStore, event: Mapping[str, Any], *, origin: str, languages: Collection[str] = ()
) -> Incident:
    """The incident this event describes once applied to what the store knows."""
    incident_id = event.get(ID_FIELD)
    if not isinstance(incident_id, str) or not incident_id:
        raise EventError(
            [Problem(origin, None, None, ID_FIELD, "missing: every event needs an 'id'")]
        )
    current = store.snapshot(incident_id)
    try:
        return parse_incident(
            event,
            origin=origin,
            languages=languages,
            current=current.incident if current is not None else None,
        )
    except StateFileError as e:
        raise EventError(e.problems) from None


def _encodable(data: Any) -> bool:
    """JSON may carry lone surrogates ("\\ud800") that no platform can take as UTF-8."""
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
