"""What is wrong with an input ops wrote (config, state file, event, template), and the error
that carries every such problem at once.

Each kind of input has its own problem class (a frozen dataclass) saying what a problem is
about: a config key, an incident and its field, a template line. They all read alike,
``path:line: subject: message``, and every error listing them is a :class:`ProblemsError`,
so a caller (the CLI, a reload) handles all of them the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

from .logs import redact


class Problem:
    """One thing wrong, located as precisely as the source allows.

    Subclasses are frozen dataclasses with at least ``path``, ``line`` and ``message``;
    they say what the problem is about through :meth:`subject`.
    """

    path: str
    line: int | None
    message: str

    def __post_init__(self) -> None:
        # A value quoted back (a secret put in the wrong key, a token pasted in a field) is
        # never shown, whatever prints the problem: redacted once, where it is made.
        object.__setattr__(self, "message", redact(self.message))

    def subject(self) -> str | None:
        """What the problem is about (a key, a field), or None when the location says it."""
        return None

    def __str__(self) -> str:
        parts = [self.path if self.line is None else f"{self.path}:{self.line}"]
        subject = self.subject()
        if subject:
            parts.append(subject)
        parts.append(self.message)
        return ": ".join(parts)


P = TypeVar("P", bound=Problem)


class ProblemsError(Exception, Generic[P]):
    """An input that cannot be used; ``problems`` lists every reason, ``str()`` one a line."""

    def __init__(self, problems: Iterable[P]) -> None:
        self.problems = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)
