"""The contract every source of incident descriptions fulfils (state file, spool, Redis, HTTP).

Two kinds:

- a ``PullSource`` (state file, spool, Redis) is polled by the daemon. It hands over a
  ``Batch`` and is told, through ``Batch.ack``, once the store has committed it: only then
  may a queue forget the events. It may also tell when to poll (``watch``/``wait``: the
  kernel's notifications, a blocking read), so that a change is taken in as it happens;
- a ``PushSource`` (the HTTP intake) is started with a ``Submit`` callback and hands each
  event over as it arrives; ``submit`` returns a future answered once the store committed
  it, so the sender can be told.

Both are closed at shutdown and report their last problem in ``last_error``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from concurrent.futures import Future
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


# Hands one pushed event over (its data and where it came from, for messages) without
# waiting: the future is answered with the incident id once the store committed it, or with
# ``EventError`` for a refused event (nothing of it applied). Raises ``ServiceStopping`` once
# the service stops (or answers the future with it).
Submit = Callable[[dict[str, Any], str], Future[str]]


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
    """Polled by the daemon; may also say when to poll (``watch``, then ``wait``).

    A watched source is polled by one thread of the daemon in a loop: ``wait``, then
    ``poll`` until it hands nothing over. ``wait`` is never called concurrently with itself
    or with ``poll``; ``interrupt`` may come from any thread at any time.
    """

    @abc.abstractmethod
    def poll(self) -> Batch | None:
        """New incident descriptions since the last poll, or None. Never blocks for long."""

    def watch(self) -> str | None:
        """Start change notifications, before the first poll so that no change between
        that poll and the first ``wait`` goes unseen. None once watching; else why this
        source cannot be watched (the daemon polls it at ``poll_interval`` instead)."""
        return "this source gives no change notifications"

    def wait(self, timeout: float) -> bool:
        """After ``watch``: block until something may have changed (True: poll now) or
        ``timeout`` seconds passed (False). Returns False at once after ``interrupt``."""
        return False

    def interrupt(self) -> None:
        """End a ``wait`` in progress, and every later one, at once: the service stops."""
        return None


class PushSource(Source):
    @abc.abstractmethod
    def start(self, submit: Submit) -> None:
        """Start accepting events, handing each to ``submit``. Raises ``OSError`` if it
        cannot (an address in use)."""
