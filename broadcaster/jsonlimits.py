"""JSON from outside, bounded: one parser for every door (HTTP, spool, Redis, state data).

``load_json`` refuses, with a ``JsonError`` (a ``ValueError``) and never anything else:
invalid JSON or UTF-8, ``NaN``/``Infinity``, nesting deeper than ``MAX_JSON_DEPTH`` and text
with lone surrogates ("\\ud800", what a tool that cuts an emoji in half produces), which no
platform can take as UTF-8.
"""

from __future__ import annotations

import json
from typing import Any

# An event is a flat object with a few per-language tables: depth 3 in practice.
MAX_JSON_DEPTH = 32


class JsonError(ValueError):
    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


def _no_constants(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def load_json(raw: bytes | str) -> Any:
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        data = json.loads(text, parse_constant=_no_constants)
    except RecursionError:
        raise JsonError(f"invalid JSON: nested deeper than {MAX_JSON_DEPTH} levels") from None
    except UnicodeDecodeError as e:
        raise JsonError(f"invalid JSON: not UTF-8 ({e.reason} at byte {e.start})") from None
    except ValueError as e:
        raise JsonError(f"invalid JSON: {e}", getattr(e, "lineno", None)) from None
    check_value(data)
    return data


def check_value(data: Any) -> None:
    """Depth and text checks on decoded data (also for TOML, which has no depth bound)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            if depth > MAX_JSON_DEPTH:
                raise JsonError(f"nested deeper than {MAX_JSON_DEPTH} levels")
            for key, item in value.items():
                if isinstance(key, str):
                    _check_text(key)
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            if depth > MAX_JSON_DEPTH:
                raise JsonError(f"nested deeper than {MAX_JSON_DEPTH} levels")
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, str):
            _check_text(value)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise JsonError(
            "text with an invalid character (a lone surrogate such as \\ud800): "
            "not valid Unicode, cannot be posted"
        ) from None
