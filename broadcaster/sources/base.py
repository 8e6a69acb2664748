"""The contract every source of incident descriptions fulfils (state file, spool, Redis, HTTP).

A source is polled by the daemon. It hands over a ``Batch`` and is told, through
``Batch.ack``, once the store has committed it: only then may a queue forget the events.
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


class Source(abc.ABC):
    name: str

    @abc.abstractmethod
    def poll(self) -> Batch | None:
        """New incident descriptions since the last poll, or None. Never blocks for long."""

    @property
    def last_error(self) -> str | None:
        """The problem that keeps the source on its last good input, if any."""
        return None

    def close(self) -> None:
        """Release files, sockets, connections."""
        return None
