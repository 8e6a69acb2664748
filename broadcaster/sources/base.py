"""The contract every source of incident descriptions fulfils (state file, spool, Redis, HTTP).

A source is polled by the daemon. It hands over a ``Batch`` and is told, through
``Batch.ack``, once the store has committed it: only then may a queue forget the events.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field

from ..model import Incident


def _nothing() -> None:
    return None


@dataclass
class Batch:
    incidents: list[Incident]
    # Called after the store committed ``incidents``; a queue acknowledges its events here.
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
