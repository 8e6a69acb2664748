"""The long-running service: takes changes in as they come, plans on time, delivers,
reloads, stops cleanly.

The pull sources are taken in by ``polling.SourcePoller`` (a thread per source that can
say when it changed, an APScheduler (3.x, UTC) job every ``poll_interval`` for the
others); what they hand over is applied here, under the plan lock. Pushed events are
committed in groups (``groupcommit``). Planning runs after every change, and otherwise
only at a one-shot "wake" job at the earliest promised update, rebuilt from the store at
every start and every plan (so no APScheduler job store is needed), plus a rare safety
net. Idle, nothing runs. The main thread only handles signals.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import threading
from collections.abc import Collection
from concurrent.futures import Future
from contextlib import ExitStack
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

from apscheduler.schedulers.background import BackgroundScheduler

from .channels.dryrun import DryRunChannel
from .clock import Clock, utcnow
from .components import App
from .config import Config, IntakeConfig, load_config
from .control import Attachment, EventListener
from .events import EventError, merge
from .groupcommit import Closed, GroupCommitter, Pending
from .health import LOCK_TIMEOUT, Health, assess
from .instancelock import InstanceLock
from .model import ID_FIELD
from .polling import SourcePoller
from .problems import ProblemsError
from .render import TemplateProblem
from .sources.base import Batch, Event, ServiceStopping
from .statefile import Problem
from .status import WAITING

log = logging.getLogger("broadcaster.daemon")

# Safety net: plan at least this often even if no wake-up was scheduled. Rarely needed: a
# plan that failed (the store unreachable at the promised time) is retried after
# RETRY_PLAN_AFTER, and a wake-up missed while the process was suspended still runs.
REPLAN_EVERY = timedelta(minutes=15)
RETRY_PLAN_AFTER = timedelta(seconds=5)

# How often an idle daemon checks that its store and lock file are still in place.
SIGHT_EVERY = timedelta(seconds=5)

# Start and reload plan every open incident in slices of this many, the plan lock let go
# between two: /healthz and pushed events wait for one slice, not for everything open.
PLAN_SLICE = 200


# Exceptions an event's own data causes, not the environment: retrying cannot help.
POISON = (ValueError, TypeError, ArithmeticError, LookupError, AttributeError, RecursionError)


class ReloadError(ProblemsError[TemplateProblem]):
    """A config refused on start or reload: its templates do not all render."""


class Assembler(Protocol):
    """Builds what serves one configuration (``app.py``); the daemon only runs it."""

    def check(self, config: Config) -> None:
        """Raise ``ReloadError`` if the config cannot serve (templates that cannot render)."""

    def build(self, config: Config) -> App:
        """The components for ``config``, delivery not yet started."""


class _NoListener:
    def event_accepted(self, source: str) -> None:
        return None

    def event_rejected(self, source: str) -> None:
        return None


class Daemon:
    def __init__(
        self,
        config_path: Path,
        *,
        dry_run: bool,
        assembler: Assembler,
        clock: Clock = utcnow,
        events: EventListener | None = None,
    ) -> None:
        self.config_path = Path(config_path)
        self.dry_run = dry_run
        self.assembler = assembler
        self.clock = clock
        self.events: EventListener = events if events is not None else _NoListener()
        self.app: App | None = None
        self.shell: Attachment | None = None
        self._plan_lock = threading.RLock()
        self._instance_lock: InstanceLock | None = None
        self._blind: str | None = None  # why it halted (``blind``): until a restart
        self._stop = threading.Event()
        self._wake_fd: int | None = None  # run_forever's self-pipe: stop() writes to it
        # While start (or reload) plans every open incident: (incidents planned, of how many).
        self._planning_all: tuple[int, int] | None = None
        self._committer: GroupCommitter | None = None
        # What start() started, undone in reverse order by shutdown().
        self._running = ExitStack()
        self.scheduler = BackgroundScheduler(
            timezone="UTC",
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 60},
        )
        # Takes in what the pull sources hold (watcher threads, the poll job); hands each
        # batch back to ``_apply_batch`` under the plan lock, then plans.
        self._poller = SourcePoller(
            scheduler=self.scheduler,
            plan_lock=self._plan_lock,
            current=lambda: self.app,
            apply_batch=self._apply_batch,
            plan=self.plan,
            blind=self.blind,
            stop=self._stop,
        )

    def attach(self, shell: Attachment) -> None:
        """The service shell: started once the daemon serves, stopped first at shutdown,
        and asked to reload on SIGHUP."""
        self.shell = shell

    # -- what the service shell may see (``control.DaemonControl``) ----------------------

    @property
    def scheduler_alive(self) -> bool:
        # APScheduler 3 exposes no liveness check: its thread can die while `running` stays
        # True, so look at the thread too (the scheduler is ours; the field is APScheduler's).
        thread = getattr(self.scheduler, "_thread", None)
        return bool(self.scheduler.running) and (thread is None or thread.is_alive())

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def health(self, *, stopping: bool = False) -> Health:
        """The health check (``/healthz``, metrics, watchdog); ``stopping`` when the shell
        around the daemon is stopping already.

        Planning is held still while the components are assessed, so a reload cannot swap
        them midway; if that cannot be had within ``LOCK_TIMEOUT`` seconds, planning is
        stuck and the daemon unhealthy.
        """
        now = self.clock()
        if stopping or self.stopping:
            return Health("stopping", ("the service is stopping",), now, dry_run=self.dry_run)
        if not self._plan_lock.acquire(timeout=LOCK_TIMEOUT):
            return Health(
                "unhealthy",
                (f"planning has been stuck for more than {LOCK_TIMEOUT:g}s",),
                now,
                dry_run=self.dry_run,
            )
        try:
            if self.app is None:
                return Health(
                    "stopping", ("the service is not running",), now, dry_run=self.dry_run
                )
            health = assess(self.app, scheduler_alive=self.scheduler_alive, now=now)
            blind = self.blind()
            if blind is not None:
                # Halted on purpose: the watchdog keeps quiet, as a restart on a fresh store
                # would announce everything again; ops restart once the files are back.
                reasons = (blind, *(r for r in health.reasons if "delivery worker" not in r))
                health = replace(health, state="unhealthy", reasons=reasons, halted=True)
            progress = self._planning_all
            if progress is not None and health.state == "ok":
                done, total = progress
                reason = f"planning every open incident (start, reload): {done} of {total} done"
                health = replace(health, state="starting", reasons=(*health.reasons, reason))
            return health
        finally:
            self._plan_lock.release()

    def blind(self) -> str | None:
        """Why the daemon refuses to go on, once its store or lock file was deleted or
        replaced (None while both are in place).

        Recorded on the orphaned file, every post would be forgotten at the next start and
        announced again; without its lock, a second daemon could start beside it. So, once
        seen, planning, delivery and intake stop (logged once) until a restart: the daemon
        does not exit, since a supervisor restarting it on a fresh store would re-announce
        everything.
        """
        if self._blind is not None:
            return self._blind
        lock, app = self._instance_lock, self.app
        reason = None
        if lock is not None and not lock.intact():
            reason = (
                f"the lock file {lock.path} was deleted or replaced: another daemon could "
                "start on the same data directory; restart this one"
            )
        elif app is not None:
            reason = app.store.lost()
        if reason is None:
            return None
        self._blind = reason
        log.error(
            "refusing to continue blind: %s (planning, delivery and intake are stopped "
            "until this daemon is restarted)",
            reason,
        )
        if app is not None:
            for worker in app.delivery.workers.values():
                worker.request_stop()  # between posts: one in flight finishes
        return reason

    def intake_config(self) -> IntakeConfig | None:
        """The intake settings in force (a reload may change them); None when not serving."""
        app = self.app
        return app.config.intake if app is not None else None

    def source_names(self) -> list[str]:
        """The names of the polled sources in service."""
        app = self.app
        return [s.name for s in app.sources] if app is not None else []

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start serving; on failure, whatever was started is stopped again."""
        with ExitStack() as started:
            config = load_config(self.config_path)
            self.assembler.check(config)
            name = "dry-run.lock" if self.dry_run else "broadcaster.lock"
            lock = InstanceLock(config.data_dir / name)
            lock.acquire()
            started.callback(lock.release)
            self._instance_lock = lock
            self.app = self.assembler.build(config)
            started.callback(self._close_app)
            self.app.delivery.start()
            self.scheduler.start()
            started.callback(self._stop_scheduler)
            watched = self._poller.schedule(config, self.app)
            started.callback(self._poller.stop_watchers)
            # The safety net plans what is due over every open incident: cheap when idle.
            self.scheduler.add_job(
                self.plan,
                "interval",
                args=[()],
                seconds=REPLAN_EVERY.total_seconds(),
                id="replan",
            )
            # Planning, polling and intake look before they act; this catches a store or
            # lock deleted while the daemon idles. Not every second: each scheduler run
            # costs more idle CPU than the whole notification-driven intake.
            self.scheduler.add_job(
                self.blind, "interval", seconds=SIGHT_EVERY.total_seconds(), id="sight"
            )
            # Pushed events are committed by one thread, in groups; it stops after the shell
            # (which waits for the requests in progress, answered once committed).
            committer = GroupCommitter(self._commit_group, self._settle)
            committer.start()
            self._committer = committer
            started.callback(committer.close)
            # The shell first: /healthz answers ("starting") while everything open is
            # planned, a slice at a time, and pushed events are taken between two slices.
            self._planning_all = (0, 0)
            if self.shell is not None:
                self.shell.start()
                started.callback(self.shell.stop)
            self.poll_sources()
            self.plan_everything()
            self._poller.start_watchers(self.app, watched)
            log.info(
                "broadcaster running%s: %d channel(s), state file %s",
                " (dry run)" if self.dry_run else "",
                len(config.channels),
                config.state_file,
            )
            self._say_if_nothing_new()
            self._running = started.pop_all()

    def stop(self) -> None:
        self._stop.set()
        self._wake()

    def _wake(self) -> None:
        fd = self._wake_fd
        if fd is not None:
            with contextlib.suppress(OSError):  # full: it wakes anyway; closed: it is done
                os.write(fd, b"\0")

    def shutdown(self) -> None:
        """Undo start() in reverse: the shell (refuses new work), the scheduler, the App
        (delivery gets its deadline), the instance lock."""
        self._running.close()

    def _stop_scheduler(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)

    def _close_app(self) -> None:
        with self._plan_lock:
            if self.app is not None:
                self.app.close()
                self.app = None

    def run_forever(self) -> None:
        """Serve until SIGTERM/SIGINT. Must be called from the main thread."""
        # Handlers only set flags: taking a lock (Event.set) inside a signal handler can
        # deadlock with the main thread holding that same lock.
        signalled: dict[str, bool] = {"stop": False, "reload": False}

        def on_stop(*_: object) -> None:
            signalled["stop"] = True

        def on_reload(*_: object) -> None:
            signalled["reload"] = True

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_reload)
        # The main thread sleeps in select() on a self-pipe: a signal (through the wakeup
        # fd) or stop() writes to it. No periodic wake-up: idle is idle.
        readable, writable = os.pipe()
        for fd in (readable, writable):
            os.set_blocking(fd, False)
        previous = signal.set_wakeup_fd(writable)
        self._wake_fd = writable
        try:
            self.start()
            try:
                while not self._stop.is_set() and not signalled["stop"]:
                    select.select([readable], [], [])
                    _drain(readable)
                    if signalled["reload"]:
                        signalled["reload"] = False
                        if self.shell is not None:
                            self.shell.reload()
                        else:
                            self.reload()
            finally:
                self._stop.set()  # the HTTP intake answers 503 from now on
                log.info("stopping")
                self.shutdown()
        finally:
            signal.set_wakeup_fd(previous)
            self._wake_fd = None
            os.close(readable)
            os.close(writable)

    # -- work ----------------------------------------------------------------------------

    def poll_sources(self) -> None:
        """Poll every source now (start, reload; tests)."""
        app = self.app
        if app is not None:
            self._poller.poll(app.sources)

    def _apply_batch(self, app: App, source: str, batch: Batch) -> bool:
        try:
            changed_ids = app.editor.ingest(batch.incidents, self.clock(), source=source)
        except Exception:
            # Not acknowledged, so the source offers it again at the next poll.
            log.exception("could not record input from %s; will retry", source)
            return False
        if self.blind() is not None:
            return False  # committed to a lost store: offered again at the next start
        batch.ack()
        changed_ids += self._apply_events(app, source, batch.events)
        if changed_ids:
            log.info("%s: changes to %s", source, ", ".join(sorted(set(changed_ids))))
        return bool(changed_ids)

    def _apply_events(self, app: App, source: str, events: list[Event]) -> list[str]:
        """Apply a polled batch's events in order, in one transaction (one fsync), each in
        its own savepoint; acknowledge or reject each only once that transaction committed.
        """
        if not events:
            return []
        store = app.store
        changed: list[str] = []
        outcomes: list[tuple[Event, str | None]] = []  # (event, why refused) in order
        try:
            with store.batch():
                for event in events:
                    try:
                        changed += self._apply_event(app, event.data, event.origin, source)
                    except EventError as e:
                        log.error("event refused: %s", e)
                        outcomes.append((event, str(e)))
                        continue
                    except POISON as e:
                        if not store.in_transaction():
                            raise
                        # What the entry's own data caused (a bug it triggers, a value the
                        # store cannot take) would fail the same way at every poll: reject
                        # it alone, so it blocks nothing behind it.
                        log.exception("event refused: %s: could not be applied", event.origin)
                        reason = f"{type(e).__name__}: {e}"
                        outcomes.append((event, f"{event.origin}: could not be applied: {reason}"))
                        continue
                    except Exception:
                        if not store.in_transaction():
                            raise
                        # The environment (a full disk): retried, in order.
                        log.exception("could not record %s; will retry", event.origin)
                        break  # keep arrival order: later events wait for this one
                    outcomes.append((event, None))
        except Exception:
            # Nothing of the batch committed: none acknowledged, all offered again in order.
            log.exception("could not record events from %s; will retry", source)
            return []
        if self.blind() is not None:
            return []  # committed to a lost store: left in the queue for the next start
        for event, refused in outcomes:
            if refused is None:
                event.ack()
                self.events.event_accepted(source)
            else:
                self.events.event_rejected(source)
                event.reject(refused)
        return changed

    def _apply_event(self, app: App, data: dict[str, Any], origin: str, source: str) -> list[str]:
        incident = merge(app.store, data, origin=origin, languages=app.config.languages())
        too_long = app.editor.check_fits(incident, self.clock())
        if too_long:  # accepted means postable: refused before anything is applied
            raise EventError(
                Problem(origin, None, incident.id, p.field, p.message) for p in too_long
            )
        # No source mark: an event says what changes now, even if this source said the same
        # thing before and another source said otherwise since. Re-applying a redelivered
        # event is harmless anyway: the merged incident is identical.
        return app.editor.ingest([incident], self.clock())

    def submit(self, data: dict[str, Any], *, origin: str, source: str) -> str:
        """Apply one pushed event (HTTP intake); returns the incident id once committed.

        Concurrent calls are committed together (``groupcommit``): one transaction, each
        event in its own savepoint, then one plan. Raises ``EventError`` for a refused
        event (nothing of it is applied then), ``StoreUnavailable`` when the store cannot
        be reached (nothing applied) and ``ServiceStopping`` once the service stops.
        """
        blind = self.blind()
        if blind is not None:
            raise ServiceStopping(f"not accepting events: {blind}")
        return self.hand_over(data, origin=origin, source=source).result()

    def hand_over(self, data: dict[str, Any], *, origin: str, source: str) -> Future[str]:
        """``submit`` without the wait (the HTTP intake's event loop awaits the future):
        answered with the incident id once committed, or with the error. Raises
        ``ServiceStopping`` at once once the service stops (a blind daemon refuses at
        commit)."""
        committer = self._committer
        if committer is None or self.app is None:
            raise ServiceStopping("the service is stopping")
        try:
            return committer.submit(Pending(data, origin, source))
        except Closed:
            raise ServiceStopping("the service is stopping") from None

    def _commit_group(self, items: list[Pending]) -> list[str]:
        """Commit these events in order in one transaction; answer each one's future."""
        with self._plan_lock:
            app = self.app
            blind = self.blind()
            if app is None or blind is not None:
                why = (
                    "the service is stopping" if blind is None else f"not accepting events: {blind}"
                )
                for item in items:
                    item.future.set_exception(ServiceStopping(why))
                return []
            store = app.store
            changed: list[str] = []
            applied: list[Pending] = []
            try:
                with store.batch():
                    for item in items:
                        try:
                            changed += self._apply_event(app, item.data, item.origin, item.source)
                        except Exception as e:
                            if not store.in_transaction():
                                raise  # the whole transaction is gone: every event fails
                            # Its savepoint is undone: refused alone, the others go on.
                            item.future.set_exception(e)
                            continue
                        applied.append(item)
            except Exception as e:
                # Nothing committed: each event not refused on its own fails with the cause.
                for item in items:
                    if not item.future.done():
                        item.future.set_exception(e)
                return []
            gone = self.blind()
            if gone is not None:
                # Committed to a store deleted or replaced meanwhile, which the next start
                # will not see: not acknowledged, so the sender sends it again then.
                for item in applied:
                    item.future.set_exception(ServiceStopping(f"not accepting events: {gone}"))
                return []
        # Committed: only now is any of them acknowledged.
        for item in applied:
            item.future.set_result(str(item.data[ID_FIELD]))
        return changed

    def _settle(self, changed: set[str]) -> None:
        """Once committed events settle: one plan for all of them. ``changed`` names the
        incidents they changed (what an incremental plan would re-plan)."""
        if changed:
            self.plan(changed)

    def plan_everything(self) -> None:
        """Plan every open incident (start, reload), a slice at a time, so that nothing
        waits long for the plan lock; the same posts as one plan of everything."""
        try:
            with self._plan_lock:
                app = self.app
                if app is None:
                    return
                slices = app.editor.slices(PLAN_SLICE)
            total = sum(map(len, slices))
            self._planning_all = (0, total)
            for number, ids in enumerate(slices, start=1):
                self._plan(ids, due=False)
                self._planning_all = (min(total, number * PLAN_SLICE), total)
            self.plan(())  # then what is due (stale posts, posts not recorded), the wake time
        finally:
            self._planning_all = None

    def plan(self, changed: Collection[str] | None = None) -> None:
        """Plan and record what is due. ``changed``: the incidents that changed (with
        those the editor saw ingested since its last plan and those whose timers are due);
        None plans every open incident at once."""
        self._plan(changed)

    def _plan(self, changed: Collection[str] | None, *, due: bool = True) -> None:
        with self._plan_lock:
            app = self.app
            if app is None or self.blind():
                return
            try:
                recorded, wake_at = app.editor.run(self.clock(), changed, due=due)
            except Exception:
                # The promised wake-up is gone with this run: try again soon rather than at
                # the safety net, so a passing store failure delays no update for long.
                if self.scheduler.running:
                    self.scheduler.add_job(
                        self.plan,
                        "date",
                        run_date=self.clock() + RETRY_PLAN_AFTER,
                        id="wake",
                        replace_existing=True,
                        misfire_grace_time=None,
                    )
                raise
            for item in recorded:
                log.info(
                    "planned %s for %s on %s (%d part(s))",
                    item.post.kind.value,
                    item.post.incident_id,
                    item.post.channel,
                    len(item.keys),
                )
                app.delivery.wake(item.post.channel)
            if wake_at is not None and self.scheduler.running:
                self.scheduler.add_job(
                    self.plan,
                    "date",
                    args=[()],
                    run_date=wake_at,
                    id="wake",
                    replace_existing=True,
                    misfire_grace_time=None,  # however late (a suspended VM): run it
                )

    def _say_if_nothing_new(self) -> None:
        """A dry run started again on a journal that already holds everything says so and
        where to look, rather than printing nothing (which looks broken)."""
        app = self.app
        if app is None:
            return
        journals = [c.journal for c in app.channels.values() if isinstance(c, DryRunChannel)]
        if not journals or not journals[0].found:
            return
        if any(n and state in WAITING for (_, state), n in app.store.counts().items()):
            return  # parts to deliver (new, or left by a previous run): they scroll by now
        if journals[0].published != journals[0].found:
            return  # this run already posted something
        log.info(
            "nothing new to post: %d post(s) already published in the dry-run journal %s "
            "(edit the state file to see more; broadcaster status --dry-run lists them)",
            journals[0].published,
            journals[0].path,
        )

    def _hand_over(self, old: App, new: App) -> None:
        """Start the new channel workers as the old ones finish.

        A new worker must not start while the old one of its channel may still be
        publishing: both would see the same post 'sending' and could publish it twice. Idle
        workers stop at once; one stuck in a request holds up only its own channel, and the
        old store is closed once the last of them is done.
        """
        old.delivery.stop(10.0)
        stuck = []
        for name, worker in new.delivery.workers.items():
            previous = old.delivery.workers.get(name)
            if previous is not None and previous.is_alive():
                stuck.append((previous, worker))
            else:
                worker.start()
        if not stuck:
            old.close(wait=0.0)
            return

        def finish() -> None:
            for previous, worker in stuck:
                log.warning("reload: %s waits for its post in flight", previous.channel.name)
                previous.join()
                if not self._stop.is_set():
                    worker.start()
            old.close(wait=0.0)

        threading.Thread(target=finish, name="reload-hand-over", daemon=True).start()

    def reload(self) -> bool:
        """SIGHUP: re-read config, templates and state at once, or keep running as before."""
        if self.blind():
            # A new App would open a fresh store in place of the lost one.
            log.error("reload refused: %s", self.blind())
            return False
        try:
            config = load_config(self.config_path)
            self.assembler.check(config)
            new = self.assembler.build(config)
        except Exception as e:  # whatever is wrong with the new config, the service stays up
            log.error("reload refused, still running on the previous config:\n%s", e)
            return False
        # The old sources' threads end before their sources are closed (by _hand_over).
        self._poller.stop_watchers()
        with self._poller.switching():  # no scheduled poll, no plan meanwhile
            old, self.app = self.app, new
            watched = self._poller.schedule(config, new)
        if old is None:
            new.delivery.start()
        else:
            self._hand_over(old, new)
        log.info("reloaded %s", self.config_path)
        self.poll_sources()
        self.plan_everything()
        if not self._stop.is_set():
            self._poller.start_watchers(new, watched)
        return True


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass
