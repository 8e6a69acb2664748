"""Reading a TOML config file: problems located by file, line and dotted key, ``${ENV_VAR}``
expansion, durations and secrets. The mechanics only; what the keys mean is ``config.py``.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from .logs import register_secret
from .problems import Problem, ProblemsError
from .statefile.sourcemap import SourceMap, toml_source_map


class Secret:
    """A credential. Its text never appears in repr, str, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        register_secret(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("secret", self._value))


@dataclass(frozen=True)
class ConfigProblem(Problem):
    """One thing wrong with the config file, naming the (dotted) key."""

    path: str
    line: int | None
    key: str
    message: str

    def subject(self) -> str | None:
        return self.key


class ConfigError(ProblemsError[ConfigProblem]):
    """The config cannot be used; ``problems`` says why."""


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|d|h|m|s)")
_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: object) -> timedelta:
    """'15m', '2h', '1h30m', '45s', '250ms', '1d' → timedelta. Raises ValueError."""
    if isinstance(text, str):
        compact = text.replace(" ", "")
        parts = _DURATION_PART.findall(compact)
        if parts and "".join(n + u for n, u in parts) == compact:
            return timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in parts))
    raise ValueError(f"expected a duration such as '15m', '2h', '1h30m' or '45s', got {text!r}")


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand(value: str) -> tuple[str, list[str]]:
    missing: list[str] = []

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in os.environ:
            missing.append(name)
            return ""
        # Whatever key it was put in (a token pasted in api_base_url...), the value of a
        # variable is never echoed: not in errors, logs or answers.
        register_secret(os.environ[name])
        return os.environ[name]

    return _ENV.sub(sub, value), missing


class Reader:
    """Walks the parsed TOML while remembering where each key sits in the source."""

    def __init__(self, path: Path, source: str) -> None:
        self.path = path
        self.source = source
        self.problems: list[ConfigProblem] = []
        self._map: SourceMap | None = None

    def line_of(self, table: str, key: str | None = None) -> int | None:
        """Line of ``key`` in ``table`` (dotted), or of the table if the key is not written."""
        if self._map is None:
            # The state file's locator; built only once a problem must be located.
            self._map = toml_source_map(self.source)
        address: tuple[str, ...] = tuple(table.split("."))
        if key is not None:
            address += (key,)
        return self._map.line(address)

    def problem(self, table: str, key: str | None, message: str) -> None:
        dotted = f"{table}.{key}" if key else table
        self.problems.append(
            ConfigProblem(str(self.path), self.line_of(table, key), dotted, message)
        )

    def unknown_keys(self, table: str, data: Mapping[str, Any], known: tuple[str, ...]) -> None:
        for key in data:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                self.problem(table, key, f"unknown key{hint}")

    def path_setting(self, table: str, key: str, data: Mapping[str, Any], default: str) -> str:
        """A path setting: a non-empty string (the default after reporting anything else)."""
        value = data.get(key, default)
        if not isinstance(value, str) or not value.strip():
            self.problem(table, key, f'expected a path as a quoted string, e.g. "{default}"')
            return default
        return value

    def duration(self, table: str, key: str, value: Any) -> timedelta | None:
        try:
            result = parse_duration(value)
        except ValueError as e:
            self.problem(table, key, str(e))
            return None
        if result <= timedelta(0):
            self.problem(table, key, "must be longer than zero")
            return None
        return result

    def string_list(self, table: str, key: str, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problem(table, key, "expected a list of strings")
            return ()
        return tuple(value)


def expand_tree(value: Any, r: Reader, where: str) -> Any:
    if isinstance(value, dict):
        return {k: expand_tree(v, r, f"{where}.{k}" if where else k) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_tree(v, r, where) for v in value]
    if isinstance(value, str) and "${" in value:
        expanded, missing = _expand(value)
        if missing:
            # Remembered, not raised: only a channel that really posts needs its credentials.
            return Missing(expanded, tuple(missing))
        return expanded
    return value


class Missing(str):
    """A string whose ${VAR} was not set in the environment."""

    variables: tuple[str, ...]

    def __new__(cls, value: str, variables: tuple[str, ...]) -> Missing:
        obj = super().__new__(cls, value)
        obj.variables = variables
        return obj
