"""A spool directory: ops (or scripts, cron, CI) drop one JSON event per file.

::

    <spool>/incoming/   *.json, applied in name order
    <spool>/done/       applied and committed
    <spool>/rejected/   refused; ``<name>.error`` beside each says why

Writers must create the file under a name we ignore (a dotfile, ``*.tmp``, ``*.part``,
anything not ending in ``.json``) and rename it when complete: a rename is atomic, so we
never read half a file.

A file leaves ``incoming/`` only after the store committed its event, by an atomic rename
made durable (the directories are fsynced) before the next event is applied. A crash between
commit and move therefore leaves at most one already-applied file in ``incoming/``; applying
it again is harmless, because the merged incident is identical to what the store holds and
the store skips a source's identical description.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import time
from functools import partial
from pathlib import Path

from ..events import MAX_EVENT_BYTES, EventError, decode
from .base import Batch, Event
from .watch import DirectoryWatch, WatchedSource

log = logging.getLogger("broadcaster.sources.spool")

# Bounds one poll: the daemon holds its lock while applying a batch, and each event costs a
# store commit plus two directory fsyncs.
DEFAULT_BATCH_SIZE = 100


class SpoolSource(WatchedSource):
    name = "spool"

    def __init__(self, directory: Path, *, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        self.directory = Path(directory)
        self.incoming = self.directory / "incoming"
        self.done = self.directory / "done"
        self.rejected = self.directory / "rejected"
        self.batch_size = batch_size
        self._error: str | None = None
        self._ready = False
        # Files already committed (None) or refused (the reason) whose move failed: moved on
        # the next polls, never handed over again.
        self._stranded: dict[str, str | None] = {}
        self._watch = None
        self._ensure_directories()

    @property
    def last_error(self) -> str | None:
        return self._error

    def poll(self) -> Batch | None:
        if not self._ensure_directories():
            return None
        self._retry_stranded()
        try:
            names = self._complete_files()
        except OSError as e:
            self._report(f"{self.incoming}: cannot list the spool: {e.strerror}")
            return None
        if not self._stranded:
            self._clear()
        events: list[Event] = []
        for name in names:
            path = self.incoming / name
            origin = str(path)
            try:
                raw = _read(path)
            except FileNotFoundError:
                continue  # taken away by someone else since the listing
            except OSError as e:
                self._refuse(name, f"{origin}: cannot read the event: {e.strerror}")
                continue
            try:
                data = decode(raw, origin=origin)
            except EventError as e:
                self._refuse(name, str(e))
                continue
            except Exception as e:  # whatever else the file triggers: it alone is refused
                log.exception("%s: could not be decoded", origin)
                self._refuse(name, f"{origin}: could not be decoded: {type(e).__name__}: {e}")
                continue
            events.append(
                Event(
                    data,
                    origin,
                    ack=partial(self._committed, name),
                    reject=partial(self._rejected, name),
                )
            )
        # Files listed but all refused still count as something handed over: a watcher then
        # polls again at once for the files behind them, not at the next safety poll.
        return Batch(events=events) if events or names else None

    # -- notifications --------------------------------------------------------------------------

    def watch(self) -> str | None:
        if not self._ensure_directories():
            return self._error
        # Only complete events: a file renamed to a *.json name (or one written in place,
        # once closed). Our own moves out of incoming/ wake nothing.
        watch = DirectoryWatch(
            lambda _, name, events: (
                _complete_name(name) and bool(events & {"MOVED_TO", "CLOSE_WRITE"})
            )
        )
        problem = watch.open([self.incoming])
        if problem is None:
            self._watch = watch
        return problem

    def wait(self, timeout: float) -> bool:
        return self._watch.wait(timeout) if self._watch is not None else False

    # -- moving files on ----------------------------------------------------------------------

    def _committed(self, name: str) -> None:
        self._stranded[name] = None
        if self._move(name, self.done, None):
            del self._stranded[name]

    def _rejected(self, name: str, reason: str) -> None:
        self._stranded[name] = reason
        if self._move(name, self.rejected, reason):
            del self._stranded[name]

    def _refuse(self, name: str, reason: str) -> None:
        log.error("event refused: %s", reason)
        self._rejected(name, reason)

    def _retry_stranded(self) -> None:
        for name, reason in list(self._stranded.items()):
            target = self.done if reason is None else self.rejected
            if self._move(name, target, reason):
                del self._stranded[name]

    def _move(self, name: str, directory: Path, reason: str | None) -> bool:
        """Move ``incoming/name`` into ``directory``; True once it is gone from incoming."""
        source = self.incoming / name
        target = directory / _free_name(directory, name)
        try:
            if reason is not None:
                # Written before the move: a rejected file is never without its reason.
                _write_durably(target.with_name(target.name + ".error"), reason + "\n")
            os.replace(source, target)
            _fsync_directory(directory)
            _fsync_directory(self.incoming)
        except OSError as e:
            if isinstance(e, FileNotFoundError) and not os.path.lexists(source):
                log.warning("%s: vanished before it could be moved to %s", source, directory)
                return True
            self._report(f"{source}: cannot move to {directory}: {e.strerror} (will retry)")
            return False
        return True

    # -- the directory ------------------------------------------------------------------------

    def _complete_files(self) -> list[str]:
        with os.scandir(self.incoming) as entries:
            names = [
                entry.name
                for entry in entries
                if _complete_name(entry.name)
                and entry.name not in self._stranded
                and entry.is_file()
            ]
        # nsmallest rather than sorted: a backlog of 100 000 files costs no full sort per poll.
        return heapq.nsmallest(self.batch_size, names)

    def _ensure_directories(self) -> bool:
        if self._ready:
            return True
        try:
            for directory in (self.incoming, self.done, self.rejected):
                directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            self._report(f"{self.directory}: cannot create the spool directories: {e.strerror}")
            return False
        self._ready = True
        return True

    def _report(self, message: str) -> None:
        if message != self._error:
            log.error("%s", message)
        self._error = message

    def _clear(self) -> None:
        if self._error is not None:
            log.info("%s: spool is working again", self.directory)
        self._error = None


def _complete_name(name: str) -> bool:
    """A complete event's name; anything else is a file still being written."""
    return name.endswith(".json") and not name.startswith(".")


def _read(path: Path) -> bytes:
    with path.open("rb") as f:
        # One byte over the limit is enough for decode() to refuse it without reading it all.
        return f.read(MAX_EVENT_BYTES + 1)


def _free_name(directory: Path, name: str) -> str:
    """``name``, or ``name`` with a time stamp before ``.json`` if already taken.

    A stamp, not ``.1``, ``.2``…: a tool that always writes ``event.json`` would otherwise
    make every move probe every earlier name.
    """
    stem = name.removesuffix(".json")
    candidates = itertools.chain(
        [name], (f"{stem}.{time.time_ns()}-{i}.json" for i in itertools.count())
    )
    for candidate in candidates:
        if not os.path.lexists(directory / candidate) and not os.path.lexists(
            directory / (candidate + ".error")
        ):
            return candidate
    raise AssertionError("unreachable")


def _write_durably(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
