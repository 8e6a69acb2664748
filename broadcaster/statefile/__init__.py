"""Reading, validating and updating the state file ops edit by hand.

The file is written under stress, often at night, so every problem is reported at once and
each names the file, the line, the incident and the field. Neither ``tomllib`` nor ``json``
reports positions for values, so a small source scanner maps every key back to its line;
it runs only when there is a problem to locate (a valid file just gets its incidents' lines).
Any malformed input ends in :class:`StateFileError`, never in another exception: the
daemon must keep running on the previous state and tell ops exactly what to fix.

The package: ``sourcemap`` (where each key is written), ``syntax`` (reading and parsing),
``validate`` (the incident schema's checks), ``edit`` (updating the file in place).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from ..model import Incident
from .edit import append_incident, apply_changes
from .syntax import (
    MAX_STATE_BYTES,
    Problem,
    StateFileError,
    decode,
    format_of,
    no_surprises,
    read,
    read_bytes,
    split_origin,
)
from .validate import (
    INCIDENT_KEYS,
    Check,
    Report,
    check_incident,
    state_from_text,
    timeline_from_text,
)

__all__ = [
    "INCIDENT_KEYS",
    "MAX_STATE_BYTES",
    "Check",
    "Problem",
    "StateFileError",
    "append_incident",
    "apply_changes",
    "load_state",
    "load_timeline",
    "parse_incident",
    "read_bytes",
]


def load_state(
    path: Path,
    languages: Collection[str] = (),
    max_bytes: int = MAX_STATE_BYTES,
    *,
    check: Check | None = None,
    raw: bytes | None = None,
) -> list[Incident]:
    """Read and validate the state file; ``languages`` are those the channels post in;
    ``check`` is what the posts need beyond the schema (the thread cap, ``fits``); ``raw``
    is the file's bytes when the caller has read them already (the file source digests
    them first: what it validates is then what it digested, not a second read)."""
    path_str = str(path)
    with no_surprises(path_str):
        fmt = format_of(path_str)
        if raw is None:
            text, _ = read(Path(path), path_str, max_bytes)
        else:
            text = decode(raw, path_str)
        return state_from_text(text, path_str, fmt, languages, check=check)


def load_timeline(
    path: Path, languages: Collection[str] = ()
) -> list[tuple[datetime, list[Incident]]]:
    """Read a replayable day: ``[[step]]`` entries, each ``at`` a time with its incidents."""
    path_str = str(path)
    with no_surprises(path_str):
        fmt = format_of(path_str)
        text, _ = read(Path(path), path_str)
        return timeline_from_text(text, path_str, fmt, languages)


def parse_incident(
    data: Mapping[str, Any],
    *,
    origin: str,
    languages: Collection[str] = (),
    current: Incident | None = None,
) -> Incident:
    """Validate one incident given as plain data; problems are located at ``origin``.

    ``origin`` is ``"path:line"`` (or any label); it becomes ``Incident.origin``. With
    ``current``, ``data`` updates that incident: fields it does not carry keep their value,
    and the whole result is validated.
    """
    path_str, line = split_origin(origin)
    with no_surprises(path_str):
        report = Report(path_str, None, fallback_line=line)
        incident = check_incident(data, report, (), origin, languages, current=current)
        report.raise_if_any()
        assert incident is not None  # no problems means it was built
        return incident
