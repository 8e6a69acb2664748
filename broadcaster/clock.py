"""The one wall clock: every module takes the time from here, or from a clock it was given.

Components that decide on time (delivery, the daemon, the editor) take a ``Clock`` argument
so tests can drive them; ``utcnow`` is that argument's default and the only place that
reads the system's time of day.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """Now, timezone-aware, in UTC."""
    return datetime.now(UTC)
