"""Events from queues (spool directory, Redis Streams, HTTP): partial incident updates.

An event is one JSON object with an incident's ``id`` and any of the state file's fields.
It creates the incident, or updates it: fields the event does not carry stay as they were.
The result is validated by the same checks as a state-file entry, so a bad event is refused
with the same precise messages and nothing half-applied reaches the store.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from .jsonlimits import JsonError, load_json
from .model import ID_FIELD, Incident
from .statefile import Problem, StateFileError, parse_incident
from .store import DataStore

MAX_EVENT_BYTES = 64 * 1024


class EventError(StateFileError):
    """A refused event; ``str()`` names the source, the incident and the field."""


def decode(raw: bytes | str, *, origin: str, limit: int | None = MAX_EVENT_BYTES) -> dict[str, Any]:
    """Parse an event's JSON; refuse anything that is not one JSON object, is larger than
    ``limit`` bytes (None: the caller bounded it), nested deeper than ``MAX_JSON_DEPTH`` or
    carries text that is not valid Unicode. Raises ``EventError`` only, whatever the input."""
    if limit is not None and len(raw) > limit:
        raise EventError([Problem(origin, None, None, None, f"event larger than {limit} bytes")])
    try:
        data = load_json(raw)
    except JsonError as e:
        raise EventError([Problem(origin, e.line, None, None, str(e))]) from None
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
