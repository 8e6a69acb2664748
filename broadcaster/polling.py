"""Source intake: takes in what the pull sources hold, as it comes, for the daemon.

Each source that can say when it changed (``PullSource.watch``: the kernel's notifications
for the state file and the spool, a blocking read for Redis) gets a thread that waits on it
and polls it at once; the others are polled by a job on the daemon's APScheduler every
``poll_interval`` (all of them with ``watch = "poll"``).

The poller only fetches and hands over: what a batch means (recording it, acknowledging
it) is the daemon's ``apply_batch``, run under the daemon's plan lock with the plan that
follows it, so that nothing is planned half-applied.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from datetime import timedelta

from apscheduler.schedulers.base import BaseScheduler

from .components import App
from .config import Config
from .sources.base import Batch, PullSource

# The daemon's logger: what intake logs is the daemon's doing, and operators filter on it.
log = logging.getLogger("broadcaster.daemon")

# Safety net of a watched source: polled this often even if no notification came.
WATCH_SAFETY_POLL = timedelta(seconds=60)

# Records a polled batch of ``source`` in ``app`` and acknowledges what it committed;
# True when some incident changed (then a plan follows). Called under the plan lock.
ApplyBatch = Callable[[App, str, Batch], bool]


class SourcePoller:
    """Polls the sources of the daemon's current ``App``, on notification or on schedule.

    The daemon drives it: ``schedule`` (which sources are watched, which polled by the
    scheduler), ``start_watchers``/``stop_watchers``, ``poll`` (start, reload; tests) and
    ``switching`` (reload). What it needs of the daemon it is handed: the current App,
    ``apply_batch``, ``plan``, ``blind``, the plan lock, the stop event and the scheduler.
    """

    def __init__(
        self,
        *,
        scheduler: BaseScheduler,
        plan_lock: threading.RLock,
        current: Callable[[], App | None],
        apply_batch: ApplyBatch,
        plan: Callable[[Collection[str]], None],
        blind: Callable[[], str | None],
        stop: threading.Event,
    ) -> None:
        self._scheduler = scheduler
        self._plan_lock = plan_lock
        self._current = current
        self._apply_batch = apply_batch
        self._plan = plan
        self._blind = blind
        self._stop = stop
        self._poll_lock = threading.Lock()
        # Per source, from poll to commit: two polls of one source would hand over (and
        # apply) the same events. Per source, so a slow Redis holds up no other source.
        self._source_locks: dict[PullSource, threading.Lock] = {}
        # The threads waiting on watched sources, and how to stop them.
        self._watchers: list[tuple[PullSource, threading.Thread]] = []
        self._watching = threading.Event()

    def schedule(self, config: Config, app: App) -> list[PullSource]:
        """Start notifications where the config and the sources allow, and poll the other
        sources every ``poll_interval``; returns the watched sources (whose threads
        ``start_watchers`` starts once they have been polled a first time)."""
        watched: list[PullSource] = []
        polled: list[PullSource] = []
        for source in app.sources:
            if config.watch == "poll":
                polled.append(source)
                continue
            try:
                problem = source.watch()
            except Exception as e:  # whatever it is, polling still works
                problem = f"{type(e).__name__}: {e}"
            if problem is None:
                watched.append(source)
            else:
                log.warning(
                    "%s: no change notifications (%s); polling every %gs instead",
                    source.name,
                    problem,
                    config.poll_interval.total_seconds(),
                )
                polled.append(source)
        if watched:
            log.info(
                "watching %s for changes; safety poll every %gs",
                ", ".join(s.name for s in watched),
                WATCH_SAFETY_POLL.total_seconds(),
            )
        if polled:
            self._scheduler.add_job(
                self._poll_scheduled,
                "interval",
                seconds=config.poll_interval.total_seconds(),
                args=(app, polled),
                id="poll",
                replace_existing=True,
            )
        elif self._scheduler.get_job("poll") is not None:
            self._scheduler.remove_job("poll")
        return watched

    @contextmanager
    def switching(self) -> Iterator[None]:
        """Hold every scheduled poll and planning while the daemon puts a new App in
        service (reload: swap it, then ``schedule`` its sources); the new sources start
        with fresh locks. The watchers must be stopped before."""
        with self._poll_lock, self._plan_lock:
            yield
            self._source_locks = {}

    def start_watchers(self, app: App, sources: list[PullSource]) -> None:
        self._watching.set()
        for source in sources:
            thread = threading.Thread(
                target=self._watch,
                args=(app, source),
                name=f"watch-{source.name}",
                daemon=True,
            )
            self._watchers.append((source, thread))
            thread.start()

    def stop_watchers(self) -> None:
        """End every watcher thread: its wait returns at once, a poll in progress finishes."""
        self._watching.clear()
        watchers, self._watchers = self._watchers, []
        for source, _ in watchers:
            source.interrupt()
        for _, thread in watchers:
            thread.join()

    def _watch(self, app: App, source: PullSource) -> None:
        """A watched source's thread: wait for a change, then poll until nothing is left
        (a spool backlog comes 100 files a poll)."""
        safety = WATCH_SAFETY_POLL.total_seconds()
        retry = app.config.poll_interval.total_seconds()
        timeout = safety
        while self._watching.is_set():
            try:
                source.wait(timeout)
            except Exception:
                log.exception("%s: waiting for changes failed; polling it", source.name)
                if self._stop.wait(retry):
                    return
            timeout = safety
            while self._watching.is_set():
                try:
                    settled = self._poll_one(app, source)
                except Exception:  # planning failed (retried by its own wake job)
                    log.exception("%s: taking the change in failed", source.name)
                    settled = False
                if settled is None:
                    break  # nothing (more) to take in
                if not settled:
                    timeout = retry  # not committed: retried at the polling pace
                    break

    def _poll_scheduled(self, app: App, sources: list[PullSource]) -> None:
        if self._current() is app:
            self.poll(sources)

    def _lock_of(self, source: PullSource) -> threading.Lock:
        return self._source_locks.setdefault(source, threading.Lock())

    def poll(self, sources: list[PullSource]) -> None:
        """Poll these sources of the current App now, and apply what they hand over."""
        # Polling (file reads, Redis round trips) happens outside the plan lock, so a slow
        # source never holds up planning, delivery bookkeeping or the HTTP intake. Each
        # source's lock keeps its polls serial from poll to commit: the poll job, start(),
        # reload() and a watcher thread all poll, and two polls would hand over (and
        # apply) the same events.
        with self._poll_lock, ExitStack() as held:
            for source in sources:
                held.enter_context(self._lock_of(source))
            self._poll_sources(sources)

    def _poll_sources(self, sources: list[PullSource]) -> None:
        app = self._current()
        if app is None or self._blind():
            return  # unacknowledged: offered again once restarted
        batches = []
        for source in sources:
            try:
                batch = source.poll()
            except Exception:
                log.exception("source %s failed", source.name)
                continue
            if batch is not None:
                batches.append((source, batch))
        if not batches:
            return
        with self._plan_lock:
            if self._current() is not app:
                return  # reloaded meanwhile: unacknowledged, the new sources offer it again
            changed = False
            for source, batch in batches:
                changed |= self._apply_batch(app, source.name, batch)
            if changed:
                self._plan(())  # what was ingested (the editor keeps track), and what is due

    def _poll_one(self, app: App, source: PullSource) -> bool | None:
        """Poll a watched source and apply what it hands over. None: nothing handed over;
        True: some of it committed (more may follow); False: none of it could be."""
        if self._blind():
            return None  # unacknowledged: offered again once restarted
        with self._lock_of(source):
            try:
                batch = source.poll()
            except Exception:
                log.exception("source %s failed", source.name)
                return False
            if batch is None:
                return None
            settled: list[bool] = []
            batch = _noting_settlement(batch, settled)
            with self._plan_lock:
                if self._current() is not app:
                    return None  # reloaded meanwhile: the new sources offer it again
                if self._apply_batch(app, source.name, batch):
                    self._plan(())  # what was ingested (the editor keeps track), and what is due
            return bool(settled)


def _noting_settlement(batch: Batch, settled: list[bool]) -> Batch:
    """``batch`` with its acknowledgments noted in ``settled``: whether the daemon committed
    (or refused) any of it, or could not (the store failing: retried at the polling pace)."""

    def noting(callback: Callable[..., None]) -> Callable[..., None]:
        def call(*args: object) -> None:
            settled.append(True)
            callback(*args)

        return call

    events = [replace(e, ack=noting(e.ack), reject=noting(e.reject)) for e in batch.events]
    ack = noting(batch.ack) if batch.incidents or not batch.events else batch.ack
    return Batch(batch.incidents, events, ack=ack)
