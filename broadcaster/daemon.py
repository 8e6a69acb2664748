"""The long-running service: polls sources, plans on time, delivers, reloads, stops cleanly.

APScheduler (3.x, UTC) runs two jobs: a frequent poll of the sources, and a one-shot "wake"
at the earliest promised update, rebuilt from the store at every start and every plan, so no
APScheduler job store is needed. The main thread only handles signals.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import threading
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
from .model import ID_FIELD
from .problems import ProblemsError
from .render import TemplateProblem
from .sources.base import Batch, Event, ServiceStopping
from .status import WAITING

log = logging.getLogger("broadcaster.daemon")

# Safety net: plan at least this often even if no wake-up was scheduled (e.g. a template was
# broken at the promised time and got fixed since).
REPLAN_EVERY = timedelta(seconds=30)


# Exceptions an event's own data causes, not the environment: retrying cannot help.
POISON = (ValueError, TypeError, ArithmeticError, LookupError, AttributeError, RecursionError)


class ReloadError(ProblemsError[TemplateProblem]):
    """A config refused on start or reload: its templates do not all render."""


class AlreadyRunning(Exception):
    pass


class InstanceLock:
    """One daemon per data directory: two would both deliver, and post everything twice.

    An advisory ``flock``: the kernel releases it when the process dies, even by kill -9,
    so a crash never leaves a stale lock behind.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AlreadyRunning(
                f"another broadcaster is already running on {self.path.parent} "
                f"(lock {self.path.name} is held)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def intact(self) -> bool:
        """Whether the path still names the file we hold: deleted (or the data directory
        wiped), another daemon could take a fresh lock and post everything again."""
        if self._fd is None:
            return True
        try:
            held, named = os.fstat(self._fd), os.stat(self.path)
        except OSError:
            return False
        return (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


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
        self._poll_lock = threading.Lock()
        self._stop = threading.Event()
        self._wakeup = threading.Event()
        self._committer: GroupCommitter | None = None
        # What start() started, undone in reverse order by shutdown().
        self._running = ExitStack()
        self.scheduler = BackgroundScheduler(
            timezone="UTC",
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 60},
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
            lock = self._instance_lock
            if lock is not None and not lock.intact():
                reason = (
                    f"the lock file {lock.path} was deleted or replaced: another daemon could "
                    "start on the same data directory; restart this one"
                )
                health = replace(health, state="unhealthy", reasons=(*health.reasons, reason))
            lost = self.app.store.lost()
            if lost is not None:
                health = replace(health, state="unhealthy", reasons=(*health.reasons, lost))
            return health
        finally:
            self._plan_lock.release()

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
            self._schedule_polling(config)
            self.scheduler.add_job(
                self.plan, "interval", seconds=REPLAN_EVERY.total_seconds(), id="replan"
            )
            # Pushed events are committed by one thread, in groups; it stops after the shell
            # (which waits for the requests in progress, answered once committed).
            committer = GroupCommitter(self._commit_group, self._settle)
            committer.start()
            self._committer = committer
            started.callback(committer.close)
            self.poll_sources()
            self.plan()
            log.info(
                "broadcaster running%s: %d channel(s), state file %s",
                " (dry run)" if self.dry_run else "",
                len(config.channels),
                config.state_file,
            )
            self._say_if_nothing_new()
            if self.shell is not None:
                self.shell.start()
                started.callback(self.shell.stop)
            self._running = started.pop_all()

    def _schedule_polling(self, config: Config) -> None:
        self.scheduler.add_job(
            self.poll_sources,
            "interval",
            seconds=config.poll_interval.total_seconds(),
            id="poll",
            replace_existing=True,
        )

    def stop(self) -> None:
        self._stop.set()
        self._wakeup.set()

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
        self.start()
        try:
            while not self._stop.is_set() and not signalled["stop"]:
                self._wakeup.wait(0.2)
                self._wakeup.clear()
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

    # -- work ----------------------------------------------------------------------------

    def poll_sources(self) -> None:
        # Polling (file reads, Redis round trips) happens outside the plan lock, so a slow
        # source never holds up planning, delivery bookkeeping or the HTTP intake. The poll
        # lock keeps polls serial from poll to commit: the scheduled job, start() and
        # reload() all poll, and two polls would hand over (and apply) the same events.
        with self._poll_lock:
            self._poll_sources()

    def _poll_sources(self) -> None:
        app = self.app
        if app is None:
            return
        batches = []
        for source in app.sources:
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
            if self.app is not app:
                return  # reloaded meanwhile: unacknowledged, the new sources offer it again
            changed = False
            for source, batch in batches:
                changed |= self._apply_batch(app, source.name, batch)
            if changed:
                self.plan()

    def _apply_batch(self, app: App, source: str, batch: Batch) -> bool:
        try:
            changed_ids = app.editor.ingest(batch.incidents, self.clock(), source=source)
        except Exception:
            # Not acknowledged, so the source offers it again at the next poll.
            log.exception("could not record input from %s; will retry", source)
            return False
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
        committer = self._committer
        if committer is None or self.app is None:
            raise ServiceStopping("the service is stopping")
        try:
            future = committer.submit(Pending(data, origin, source))
        except Closed:
            raise ServiceStopping("the service is stopping") from None
        return future.result()

    def _commit_group(self, items: list[Pending]) -> list[str]:
        """Commit these events in order in one transaction; answer each one's future."""
        with self._plan_lock:
            app = self.app
            if app is None:
                for item in items:
                    item.future.set_exception(ServiceStopping("the service is stopping"))
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
        # Committed: only now is any of them acknowledged.
        for item in applied:
            item.future.set_result(str(item.data[ID_FIELD]))
        return changed

    def _settle(self, changed: set[str]) -> None:
        """Once committed events settle: one plan for all of them. ``changed`` names the
        incidents they changed (what an incremental plan would re-plan)."""
        if changed:
            self.plan()

    def plan(self) -> None:
        with self._plan_lock:
            app = self.app
            if app is None:
                return
            recorded, wake_at = app.editor.run(self.clock())
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
                    self.plan, "date", run_date=wake_at, id="wake", replace_existing=True
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
        try:
            config = load_config(self.config_path)
            self.assembler.check(config)
            new = self.assembler.build(config)
        except Exception as e:  # whatever is wrong with the new config, the service stays up
            log.error("reload refused, still running on the previous config:\n%s", e)
            return False
        with self._poll_lock, self._plan_lock:
            old, self.app = self.app, new
            self._schedule_polling(config)
        if old is None:
            new.delivery.start()
        else:
            self._hand_over(old, new)
        log.info("reloaded %s", self.config_path)
        self.poll_sources()
        self.plan()
        return True
