"""How the daemon and the service shell around it talk, without importing each other.

``app.py`` builds both and attaches the shell to the daemon. The shell sees the daemon as a
``DaemonControl``; the daemon sees the shell as an ``Attachment`` and its metrics as an
``EventListener``.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Protocol

from .clock import Clock
from .components import App


class DaemonControl(Protocol):
    """The daemon as the service shell uses it."""

    @property
    def dry_run(self) -> bool: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def app(self) -> App | None:
        """The components in service, None before the start and after the stop."""

    @property
    def scheduler_alive(self) -> bool:
        """Whether the job scheduler (planning, polling) is running."""

    @property
    def stopping(self) -> bool:
        """True once a stop was asked for."""

    def hold(self, timeout: float) -> AbstractContextManager[bool]:
        """Keep planning (and reloads) out while reading ``app``; yields False if that could
        not be had within ``timeout`` seconds (planning is stuck)."""

    def submit(self, data: dict[str, Any], *, origin: str, source: str) -> str:
        """Apply one pushed event now; returns the incident id once committed."""

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
