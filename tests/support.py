"""Helpers shared by the end-to-end tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

T = TypeVar("T")


def wait_for(condition: Callable[[], T], what: str, timeout: float = 5.0) -> T:
    """Poll ``condition`` until it returns something true; fail naming ``what`` after
    ``timeout`` seconds. For conditions no event or socket can signal (files, processes)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def opening(incident_id: str = "sbg-power", **changes: Any) -> dict[str, Any]:
    """An event that opens a critical incident, as a monitoring tool would send it."""
    started = datetime.now(UTC) - timedelta(minutes=10)
    return {
        "id": incident_id,
        "title": "Power outage in Strasbourg",
        "status": "investigating",
        "severity": "critical",
        "services": ["VPS"],
        "regions": ["SBG"],
        "started_at": started.isoformat(timespec="seconds"),
        "message": "Power lost",
    } | changes
