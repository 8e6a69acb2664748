"""Group commit: concurrent submissions committed together by one thread, one transaction.

Each caller (an HTTP request's thread) queues its work and waits. One committer thread takes
everything waiting, hands it to ``commit`` (one store transaction for all of it, each item
answered on its own future: accepted, or refused alone), then calls ``settle`` once with
what the rounds since the last settle changed (the daemon plans then); during a storm,
settles are spaced out and the rounds in between pile up behind one. So N concurrent events
cost one fsync and one plan, not N of each, and a caller is answered only once its item's
transaction committed.

Plain threads and a condition variable: nothing here knows about incidents or stores.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("broadcaster.groupcommit")

# When events kept arriving while the last plan ran (a storm), leave twice as long as that
# plan took (up to MAX_GAP) before the next: the storm then gets at least two thirds of the
# time to be committed and answered, and each plan takes in everything committed meanwhile
# (an incident's consecutive updates become one post), instead of one plan per handful of
# events. Otherwise (a lone event) the plan follows at once.
GAP_FACTOR = 2.0
MAX_GAP = 1.0


class Closed(RuntimeError):
    """The committer no longer takes work (the service is stopping)."""


@dataclass
class Pending:
    """One submitted event, answered through ``future`` (its incident id, or its error)."""

    data: dict[str, Any]
    origin: str
    source: str
    future: Future[str] = field(default_factory=Future)


# Commits the items in order, in one transaction, and answers each one's future; returns
# the incident ids that changed. Must answer every future, whatever happens.
Commit = Callable[[list[Pending]], Iterable[str]]
# Called after committed rounds (once for all those since the last call), with the ids
# they changed.
Settle = Callable[[set[str]], None]


class GroupCommitter:
    def __init__(
        self,
        commit: Commit,
        settle: Settle,
        *,
        max_gap: float = MAX_GAP,
        name: str = "group-commit",
    ) -> None:
        self.max_gap = max_gap
        self._commit = commit
        self._settle = settle
        self._cond = threading.Condition()
        self._queue: list[Pending] = []
        self._unanswered = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, item: Pending) -> Future[str]:
        """Queue ``item``; its future is answered once it is committed (or refused). It
        cannot be cancelled (an event loop awaiting it may try, when its task is): once
        queued, the event is committed whatever the caller does meanwhile."""
        with self._cond:
            if self._closed:
                raise Closed("the service is stopping")
            item.future.set_running_or_notify_cancel()
            self._queue.append(item)
            self._unanswered += 1
            self._cond.notify()
        return item.future

    @property
    def unanswered(self) -> int:
        """Events submitted and not yet answered (queued, or in the round being committed)."""
        with self._cond:
            return self._unanswered

    def close(self) -> None:
        """Take no more work; what is queued is still committed (and settled), then the
        thread ends."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        changed: set[str] = set()
        due: float | None = None  # when to settle what is committed and not yet settled
        last_end, gap = -math.inf, 0.0  # when the last settle ended, and the pause owed after
        owed_since = 0.0  # when the first round not settled yet committed
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    if due is None:
                        self._cond.wait()
                    elif (left := due - time.monotonic()) > 0:
                        self._cond.wait(left)
                    else:
                        break
                items, self._queue = self._queue, []
                closing = self._closed
            if items:
                changed.update(self._round(items))
                with self._cond:
                    self._unanswered -= len(items)
                    more = bool(self._queue)
                if due is None:
                    owed_since = time.monotonic()
                    due = max(owed_since, last_end + gap)
                if more and not closing and time.monotonic() - owed_since < self.max_gap:
                    continue  # arrived while committing: into the same plan
            if due is not None and (closing or time.monotonic() >= due):
                owed, changed, due = changed, set(), None
                started = time.monotonic()
                try:
                    self._settle(owed)
                except Exception:
                    log.exception("planning after committed events failed; retried later")
                last_end = time.monotonic()
                with self._cond:
                    storm = bool(self._queue)  # events kept coming while it planned
                # A lone event is planned at once; in a storm, the next plan waits a while.
                gap = min(GAP_FACTOR * (last_end - started), self.max_gap) if storm else 0.0
            elif closing and not items and due is None:
                return

    def _round(self, items: list[Pending]) -> Iterable[str]:
        try:
            return self._commit(items)
        except BaseException as e:  # never leave a caller waiting forever
            for item in items:
                if not item.future.done():
                    item.future.set_exception(e)
            if not isinstance(e, Exception):
                raise
            log.exception("committing %d event(s) failed", len(items))
            return ()
