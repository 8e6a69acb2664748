"""Times as people type them under stress: ISO 8601, ``HH:MM`` or ``+30m``.

Shared by ``draft`` and the console, so both accept the same words and mean the same time.
A time without a UTC offset is read in the configured timezone; ``HH:MM`` is today there,
or tomorrow if that time has passed when it is a promise (``future=True``); ``+30m``
counts from now.
"""

from __future__ import annotations

import argparse
import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

_CLOCK = re.compile(r"([01]?\d|2[0-3])[:h]([0-5]\d)")
_RELATIVE = re.compile(r"\+\s*(\d+(?:\.\d+)?)\s*(m|min|h|d)")
_UNIT = {"m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}

HINT = "ISO 8601 (2017-11-09T10:45+01:00), HH:MM or +30m"


def parse_time(text: str, now: datetime, tz: ZoneInfo, *, future: bool = False) -> datetime:
    """The aware datetime ``text`` means at ``now`` in ``tz``. Raises ValueError."""
    value = text.strip()
    relative = _RELATIVE.fullmatch(value)
    if relative:
        seconds = float(relative.group(1)) * _UNIT[relative.group(2)]
        return (now + timedelta(seconds=seconds)).astimezone(tz).replace(microsecond=0)
    clock = _CLOCK.fullmatch(value)
    if clock:
        local = now.astimezone(tz)
        at = local.replace(
            hour=int(clock.group(1)), minute=int(clock.group(2)), second=0, microsecond=0
        )
        if future and at < local:
            at = (at + timedelta(days=1)).replace(tzinfo=tz)
        return at
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"cannot read {text!r} as a time: expected {HINT}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed


def aware_argument(text: str) -> datetime:
    """``--at``/``--start``: an ISO 8601 time with its offset (argparse's ``type``)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"cannot read {text!r} as a time: expected ISO 8601 with its offset, "
            "e.g. 2017-11-09T08:00+01:00"
        ) from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset, e.g. 2017-11-09T08:00+01:00")
    return value


def hours_argument(text: str) -> float:
    """``simulate --hours``: a number of hours above 0, at most a year."""
    try:
        hours = float(text)
    except ValueError:
        hours = float("nan")
    if not 0 < hours <= 24 * 366:  # NaN fails too
        wanted = "expected a number of hours above 0 (at most 8784)"
        raise argparse.ArgumentTypeError(f"{wanted}, got {text!r}")
    return hours
