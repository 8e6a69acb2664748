"""One daemon per data directory: the instance lock the daemon takes at start."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


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
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError:
            return True  # a passing error (EACCES, ESTALE) says nothing: asked again later
        return (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
