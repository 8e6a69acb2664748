"""Change notifications for the file-based sources: the kernel's inotify on directories.

A ``DirectoryWatch`` wakes whoever waits on it when an entry of interest in one of its
directories is created, written, renamed in or out, or deleted. Watching the *directory*
(not the file's inode) is what sees every way a file gets replaced: an in-place write, an
atomic rename over it (vim, ``sed -i``), a Kubernetes ConfigMap's ``..data`` symlink swap.

Why inotify itself (through ``inotify_simple``, a thin ctypes wrapper) and not watchfiles:
watchfiles hands changes to Python from a loop that sleeps ``step`` ms between looks, so a
wake-up within ~10 ms costs ~100 wake-ups a second when idle (measured: 11x the CPU of a
bare process stat-ing a file every 250 ms), and a step that idles cheaply (250 ms) is no
faster than polling. A blocking ``select`` on the inotify descriptor costs nothing while
nothing happens and wakes within a millisecond.

Where the kernel cannot give notifications (not Linux, no inotify instance or watch left:
``fs.inotify.max_user_instances``/``max_user_watches``), ``open`` says why and the caller
polls instead. Network file systems (NFS, SMB) do not report other hosts' writes: there,
configure ``watch = "poll"``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .base import PullSource

log = logging.getLogger("broadcaster.sources.watch")

# What may make a directory entry worth a look: written and closed, renamed in or out, deleted,
# created (filtered by the caller: a file being created is not complete yet), its
# permissions changed. Not MODIFY: a file being written is not complete either.
ENTRY_EVENTS = (
    "CREATE",
    "CLOSE_WRITE",
    "ATTRIB",
    "MOVED_TO",
    "MOVED_FROM",
    "DELETE",
)


class DirectoryWatch:
    """Notifications for entries of some directories; ``wait`` until one may have changed.

    ``interesting(directory, name, events)`` filters entries by name and by the names of
    their events (``ENTRY_EVENTS``; None: every entry, every event). The set of
    directories may change (``retarget``): the state file's symlink may point elsewhere
    after a swap. One thread waits; ``interrupt`` (from any thread) ends its wait at once.
    """

    def __init__(
        self, interesting: Callable[[Path, str, frozenset[str]], bool] | None = None
    ) -> None:
        self.interesting = interesting
        self._inotify: Any = None
        self._flags: Any = None
        self._mask = 0
        self._watches: dict[Path, int] = {}
        self._by_wd: dict[int, Path] = {}
        self._pipe: tuple[int, int] | None = None
        self._interrupted = False

    def open(self, directories: Iterable[Path]) -> str | None:
        """Start watching; None once watching, else why notifications are not available."""
        try:
            from inotify_simple import INotify, flags
        except (ImportError, OSError, AttributeError) as e:  # not Linux: no inotify in libc
            return f"no inotify on this system ({type(e).__name__}: {e})"
        try:
            self._inotify = INotify(nonblocking=True)
        except OSError as e:
            return (
                f"cannot create an inotify instance: {e.strerror} (fs.inotify.max_user_instances?)"
            )
        self._flags = flags
        self._mask = 0
        for name in (*ENTRY_EVENTS, "DELETE_SELF", "MOVE_SELF"):
            self._mask |= getattr(flags, name)
        self._pipe = os.pipe()
        for fd in self._pipe:
            os.set_blocking(fd, False)
        problem = self.retarget(directories)
        if problem is not None:
            self.close()
        return problem

    def retarget(self, directories: Iterable[Path]) -> str | None:
        """Watch exactly ``directories`` from now on; None, or why one cannot be watched."""
        wanted = list(dict.fromkeys(directories))
        for directory in [d for d in self._watches if d not in wanted]:
            wd = self._watches.pop(directory)
            self._by_wd.pop(wd, None)
            with contextlib.suppress(OSError):  # already gone with its directory
                self._inotify.rm_watch(wd)
        for directory in wanted:
            if directory in self._watches:
                continue
            try:
                wd = self._inotify.add_watch(str(directory), self._mask)
            except OSError as e:
                return f"cannot watch {directory}: {e.strerror}"
            self._watches[directory] = wd
            self._by_wd[wd] = directory
        return None

    def wait(self, timeout: float | None) -> bool:
        """Block until an interesting entry changed (True), or ``timeout`` seconds passed or
        ``interrupt`` was called (False). Changes since the last call count at once."""
        if self._inotify is None or self._pipe is None or self._interrupted:
            return False
        ready, _, _ = select.select([self._inotify.fileno(), self._pipe[0]], [], [], timeout)
        if self._pipe[0] in ready or self._interrupted:
            return False
        if not ready:
            return False
        return self._drain()

    def _drain(self) -> bool:
        flags = self._flags
        try:
            events = self._inotify.read(timeout=0)
        except BlockingIOError:
            return False
        changed = False
        always = flags.Q_OVERFLOW | flags.DELETE_SELF | flags.MOVE_SELF
        for event in events:
            if event.mask & always:
                changed = True  # events lost, or the directory itself went away: look
                continue
            directory = self._by_wd.get(event.wd)
            if directory is None:
                continue
            if self.interesting is None:
                changed = True
                continue
            names = frozenset(n for n in ENTRY_EVENTS if event.mask & getattr(flags, n))
            if self.interesting(directory, event.name, names):
                changed = True
        return changed

    def interrupt(self) -> None:
        """End the current (and every later) ``wait`` at once; from any thread."""
        self._interrupted = True
        if self._pipe is not None:
            with contextlib.suppress(OSError):  # full (already interrupted) or closed
                os.write(self._pipe[1], b"x")

    def close(self) -> None:
        """Release the inotify descriptor; call once the waiting thread is done."""
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None
        if self._pipe is not None:
            for fd in self._pipe:
                os.close(fd)
            self._pipe = None
        self._watches.clear()
        self._by_wd.clear()


class WatchedSource(PullSource):
    """A pull source told of changes by a ``DirectoryWatch`` of its own (``_watch``, set by
    its ``watch``): interrupting or closing it is the same for all of them."""

    _watch: DirectoryWatch | None = None

    def interrupt(self) -> None:
        if self._watch is not None:
            self._watch.interrupt()

    def close(self) -> None:
        if self._watch is not None:
            self._watch.close()
            self._watch = None
