"""The state file that ops edit by hand.

We watch the *path*, not the inode: vim, ``sed -i`` and Kubernetes ConfigMaps replace the
file (rename, symlink swap) rather than writing into it, so an inode watch would go deaf
after the first save. A broken save is reported once, and the last good state stays in
force until the file is fixed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Collection, Iterator
from pathlib import Path

from ..model import MESSAGE_FIELD, Incident
from ..statefile import MAX_STATE_BYTES, Check, StateFileError, load_state, read_bytes
from .base import Batch
from .watch import DirectoryWatch, WatchedSource

log = logging.getLogger("broadcaster.sources.file")

# A signature is trusted only once the file's mtime is this far in the past ("racy git"):
# two same-size saves within one timestamp tick (a few ms) share a signature, and the second
# would be ignored until the next save. Until then the file is re-read and its digest compared.
RACY_NS = 2_000_000_000


class StateFileSource(WatchedSource):
    name = "file"

    def __init__(
        self,
        path: Path,
        languages: Collection[str] = (),
        max_bytes: int = MAX_STATE_BYTES,
        check: Check | None = None,
    ) -> None:
        self.path = Path(path)
        self.check = check  # what posting needs beyond the schema: the thread cap
        self.languages = tuple(languages)
        self.max_bytes = max_bytes
        self._signature: tuple[int, int, int, int] | None = None
        self._digest: str | None = None
        self._error: str | None = None
        self._watch = None
        self._names: frozenset[str] = frozenset()
        # The message of each incident in the last committed save, per language.
        self._messages: dict[str, frozenset[str]] = {}

    @property
    def last_error(self) -> str | None:
        return self._error

    def _remember(self, signature: tuple[int, int, int, int]) -> None:
        racy = time.time_ns() - signature[2] < RACY_NS
        self._signature = None if racy else signature

    def _stat(self) -> tuple[int, int, int, int] | None:
        try:
            st = os.stat(self.path)  # follows symlinks: a ConfigMap swap changes the target
        except OSError:
            return None
        return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)

    def poll(self) -> Batch | None:
        signature = self._stat()
        if signature is None:
            self._report(f"{self.path}: cannot read the state file (missing?)")
            self._signature = None
            return None
        if signature == self._signature:
            return None
        try:
            # A regular file within the size limit only: a FIFO or /dev/zero at the path
            # is refused without blocking or filling memory, and the last good state stays.
            raw = read_bytes(self.path, str(self.path), self.max_bytes)
        except StateFileError as e:
            self._report(f"{e}\n(keeping the last good state until the file is fixed)")
            self._remember(signature)
            return None
        digest = hashlib.sha256(raw).hexdigest()
        if digest == self._digest:
            # Touched, not changed; or a broken save undone back to the last good bytes,
            # which are valid: the error reported meanwhile no longer holds.
            self._remember(signature)
            self._recovered()
            return None
        try:
            incidents = load_state(
                self.path, self.languages, self.max_bytes, check=self._check, raw=raw
            )
        except StateFileError as e:
            self._report(f"{e}\n(keeping the last good state until the file is fixed)")
            self._remember(signature)  # reported once: _report logs a new message only
            return None
        self._recovered()

        def committed() -> None:
            # Only once the store has it: a failed commit (disk full) is retried next poll.
            self._remember(signature)
            self._digest = digest
            self._messages = {i.id: _languages_of(i) for i in incidents}

        return Batch(incidents, ack=committed)

    def _recovered(self) -> None:
        if self._error is not None:
            log.info("%s: state file is valid again", self.path)
        self._error = None

    def _check(self, incident: Incident) -> Iterator[tuple[str, str]]:
        if self.check is not None:
            yield from self.check(incident)
        # A save cut short on a line boundary is valid TOML that has lost its last lines:
        # posted, it would be an update with no message. Ops replace a message; they do
        # not delete it, so a message gone since the last good save is refused.
        before, after = self._messages.get(incident.id, frozenset()), _languages_of(incident)
        if "*" in after or (after and "*" in before):
            gone: frozenset[str] = frozenset()  # one text for all, or per language now
        else:
            gone = before - after
        if gone:
            which = "its message" if gone == {"*"} else f"its message in {', '.join(sorted(gone))}"
            yield (
                MESSAGE_FIELD,
                f"{which} was removed since the last good save (a save cut short?): write "
                "the update's message; to stop following the incident, delete its whole "
                "[[incidents]] block",
            )

    # -- notifications --------------------------------------------------------------------------

    def _directories(self) -> list[Path]:
        """The path's directory, and its target's if it is a symlink to elsewhere (an edit
        in place of the target changes nothing in the link's directory)."""
        real = self.path.resolve()
        self._names = frozenset({self.path.name, real.name})
        return [self.path.parent, real.parent]

    def _interesting(self, directory: Path, name: str, events: frozenset[str]) -> bool:
        # "..data" and friends: a Kubernetes ConfigMap swaps a symlink to its new version.
        if name not in self._names and not name.startswith(".."):
            return False
        if not events & {"CLOSE_WRITE", "MOVED_TO", "ATTRIB", "CREATE"}:
            # Moved away or deleted: vim does so just before writing the new version, and
            # a missing file changes nothing in force (the safety poll reports it).
            return False
        if events == {"CREATE"}:
            # A file just created is still empty (it would read as "no incidents"): its
            # CLOSE_WRITE follows. A symlink is complete as soon as it exists.
            return (directory / name).is_symlink()
        return True

    def watch(self) -> str | None:
        watch = DirectoryWatch(self._interesting)
        problem = watch.open(self._directories())
        if problem is None:
            self._watch = watch
        return problem

    def wait(self, timeout: float) -> bool:
        if self._watch is None:
            return False
        changed = self._watch.wait(timeout)
        if changed:
            # A symlink swap may point the path into another directory: watch that one.
            problem = self._watch.retarget(self._directories())
            if problem is not None:
                log.warning("%s: %s; polled at the safety interval meanwhile", self.path, problem)
        return changed

    def _report(self, message: str) -> None:
        if message != self._error:
            log.error("%s", message)
        self._error = message


# The few distinct sets of languages, shared: one frozenset per incident would cost a few
# MB at 10,000 open incidents for what is nearly always the same ("*", or "en" and "fr").
_LANGUAGE_SETS: dict[frozenset[str], frozenset[str]] = {}


def _languages_of(incident: Incident) -> frozenset[str]:
    found = frozenset(incident.message.values) if incident.message is not None else frozenset()
    return _LANGUAGE_SETS.setdefault(found, found)
