"""The contract every source of incident descriptions fulfils (state file, spool, Redis, HTTP).

Two kinds:

- a ``PullSource`` (state file, spool, Redis) is polled by the daemon. It hands over a
  ``Batch`` and is told, through ``Batch.ack``, once the store has committed it: only then
  may a queue forget the events;
- a ``PushSource`` (the HTTP intake) is started with a ``Submit`` callback and hands each
  event over as it arrives; ``submit`` returns once the store committed it, so the sender
  can be told.

Both are closed at shutdown and report their last problem in ``last_error``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..model import Incident


def _nothing() -> None:
    return None


def _refuse(reason: str) -> None:
    return None


@dataclass
class Event:
    """One queued event: a partial incident description (see ``broadcaster.events``)."""

    data: dict[str, Any]
    origin: str  # where it came from, for error messages: "spool/incoming/0001.json"
    # Called once the store committed the event: only then may the queue forget it.
    ack: Callable[[], None] = field(default=_nothing)
    # Called with the reason when the event is refused: keep it where ops can see it.
    reject: Callable[[str], None] = field(default=_refuse)


@dataclass
class Batch:
    incidents: list[Incident] = field(default_factory=list)  # whole descriptions (state file)
    events: list[Event] = field(default_factory=list)  # partial updates, applied in order
    # Called after the store committed ``incidents``.
    ack: Callable[[], None] = field(default=_nothing)


class ServiceStopping(RuntimeError):
    """Raised by ``Submit`` once the service stops: the event was not applied."""


# Applies one pushed event (its data and where it came from, for messages) and returns the
# incident id once the store committed it. Raises ``EventError`` for a refused event (nothing
# of it applied) and ``ServiceStopping`` once the service stops.
Submit = Callable[[dict[str, Any], str], str]


class Source(abc.ABC):
    """What every source has: a name (for logs, metrics, health) and a close."""

    name: str

    @property
    def last_error(self) -> str | None:
        """The problem that keeps the source on its last good input, if any."""
        return None

    def close(self) -> None:
        """Release files, sockets, connections."""
        return None


class PullSource(Source):
    @abc.abstractmethod
    def poll(self) -> Batch | None:
        """New incident descriptions since the last poll, or None. Never blocks for long."""


class PushSource(Source):
    @abc.abstractmethod
    def start(self, submit: Submit) -> None:
        """Start accepting events, handing each to ``submit``. Raises ``OSError`` if it
        cannot (an address in use)."""
