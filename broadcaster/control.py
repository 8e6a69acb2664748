"""How the daemon and the service shell around it talk, without importing each other.

``app.py`` builds both and attaches the shell to the daemon. The shell sees the daemon as a
``DaemonControl``; the daemon sees the shell as an ``Attachment`` and its metrics as an
``EventListener``.
"""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path
from typing import Any, Protocol

from .config import IntakeConfig
from .health import Health


class DaemonControl(Protocol):
    """The daemon as the service shell uses it: the whole of what the shell may ask."""

    @property
    def config_path(self) -> Path:
        """The configuration file (named in the shell's own configuration errors)."""

    @property
    def stopping(self) -> bool:
        """True once a stop was asked for."""

    def health(self, *, stopping: bool = False) -> Health:
        """The one health check (``/healthz``, metrics, watchdog); ``stopping`` when the
        shell is stopping already."""

    def intake_config(self) -> IntakeConfig | None:
        """The intake settings in force (HTTP address, token); None when not serving."""

    def source_names(self) -> list[str]:
        """The names of the polled sources in service (the metrics show each)."""

    def submit(self, data: dict[str, Any], *, origin: str, source: str) -> str:
        """Apply one pushed event now; returns the incident id once committed."""

    def hand_over(self, data: dict[str, Any], *, origin: str, source: str) -> Future[str]:
        """``submit`` without the wait: the future is answered once committed."""

    def reload(self) -> bool:
        """Re-read config, templates and state; False if refused (the old config stays)."""


class Attachment(Protocol):
    """What serves alongside the daemon (the service shell)."""

    def start(self) -> None:
        """Called once the daemon serves."""

    def stop(self) -> None:
        """Called first thing at shutdown."""

    def reload(self) -> bool:
        """Called on SIGHUP in place of ``Daemon.reload`` (which it is expected to call)."""


class EventListener(Protocol):
    """Told about each event a source handed over (the metrics count them)."""

    def event_accepted(self, source: str) -> None: ...

    def event_rejected(self, source: str) -> None: ...
