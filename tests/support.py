"""Helpers shared by the end-to-end tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
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


ROOT = Path(__file__).resolve().parents[1]


def dry_run_config(intake: str) -> str:
    """A dry-run config (one X channel, 50 ms polls) fed by the given ``[intake.*]`` tables."""
    return f"""
[broadcaster]
state_file = "state.toml"
data_dir = "data"
templates_dir = "{ROOT / "message_templates"}"
timezone = "Europe/Paris"
poll_interval = "50ms"

[channels.x-en]
platform = "x"
language = "en"
consumer_key = "${{UNSET_FOR_DRY_RUN}}"

{intake}
"""
