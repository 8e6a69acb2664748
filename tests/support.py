"""Builders and helpers shared by the test modules: plain functions, imported as
``from support import ...`` (pytest puts ``tests/`` on the path)."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from broadcaster.app import service
from broadcaster.daemon import Daemon
from broadcaster.service import ServiceShell

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[1]


# -- waiting ---------------------------------------------------------------------------------


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


# -- events ----------------------------------------------------------------------------------


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


def bilingual_opening(incident_id: str = "sbg-power", **changes: Any) -> dict[str, Any]:
    """The same event with its title and message in English and French, for configs that
    post in both languages."""
    return (
        opening(
            incident_id,
            title={"en": "Power outage in Strasbourg", "fr": "Coupure électrique à Strasbourg"},
            message={"en": "Power lost on both feeds", "fr": "Courant perdu sur les deux arrivées"},
        )
        | changes
    )


# -- configs ---------------------------------------------------------------------------------

X_EN = """
[channels.x-en]
platform = "x"
language = "en"
"""
# A secret that is never set: a dry run must start without the platforms' credentials.
X_EN_WITHOUT_SECRETS = X_EN + 'consumer_key = "${UNSET_FOR_DRY_RUN}"\n'
MASTODON_FR = """
[channels.mastodon-fr]
platform = "mastodon"
language = "fr"
api_base_url = "https://mastodon.invalid"
"""


def config_toml(*tables: str, poll_interval: str = "100ms") -> str:
    """A config's text: state.toml and data/ beside it, this repository's templates, Paris
    time, then ``tables`` (channels, cadence, intakes) as given."""
    return f"""
[broadcaster]
state_file = "state.toml"
data_dir = "data"
templates_dir = "{ROOT / "message_templates"}"
timezone = "Europe/Paris"
poll_interval = "{poll_interval}"
""" + "\n".join(tables)


def dry_run_config(intake: str) -> str:
    """A dry-run config (one X channel, 50 ms polls) fed by the given ``[intake.*]`` tables."""
    return config_toml(X_EN_WITHOUT_SECRETS, intake, poll_interval="50ms")


# -- the dry-run journal and an in-process daemon ---------------------------------------------


def journal_posts(journal: Path) -> list[dict[str, Any]]:
    """What a dry run has posted so far: one JSON object a line of its journal."""
    if not journal.exists():
        return []
    return [json.loads(line) for line in journal.read_text().splitlines() if line]


def wait_journal_posts(journal: Path, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The journal's posts once there are at least ``n`` of them."""
    wait_for(lambda: len(journal_posts(journal)) >= n, f"{n} post(s) in {journal.name}", timeout)
    return journal_posts(journal)


class InProcessDryRun:
    """A dry-run daemon, in this process, on ``tmp/config.toml`` (written from ``config``)
    with an empty state file; what it posts is read back from its journal."""

    def __init__(self, tmp: Path, config: str) -> None:
        self.tmp = tmp
        self.config = tmp / "config.toml"
        self.config.write_text(config)
        (tmp / "state.toml").write_text("")
        self.journal = tmp / "data" / "dry-run.jsonl"
        self.out = io.StringIO()  # what the dry run prints instead of publishing
        self.daemon: Daemon | None = None
        self.shell: ServiceShell | None = None

    def start(self) -> Daemon:
        built = service(self.config, dry_run=True, out=self.out)
        self.daemon, self.shell = built.daemon, built.shell
        self.daemon.start()
        return self.daemon

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.shutdown()
            self.daemon = self.shell = None

    def posts(self) -> list[dict[str, Any]]:
        return journal_posts(self.journal)

    def wait_posts(self, n: int, timeout: float = 5) -> list[dict[str, Any]]:
        return wait_journal_posts(self.journal, n, timeout)
