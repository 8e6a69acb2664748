"""Reading a state file and parsing it, with syntax errors that say where and how to fix."""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import problems
from ..jsonlimits import JsonError, check_value
from . import sourcemap
from .sourcemap import Address, LazySourceMap, SourceMap, describe_address

DATETIME_EXAMPLE = "2017-11-09T07:23:00+01:00"


@dataclass(frozen=True)
class Problem(problems.Problem):
    """One thing wrong with a state file (or an event), naming the incident and the field."""

    path: str
    line: int | None
    incident_id: str | None
    field: str | None
    message: str

    def subject(self) -> str | None:
        subject = []
        if self.incident_id is not None:
            subject.append(f"incident {self.incident_id!r}")
        if self.field is not None:
            subject.append(f"field {self.field!r}")
        return " ".join(subject) or None


class StateFileError(problems.ProblemsError[Problem]):
    """The state file (or an incident given as data) cannot be used; ``problems`` says why."""


# --------------------------------------------------------------------------------------
# Reading


@contextlib.contextmanager
def no_surprises(path_str: str) -> Iterator[None]:
    """Turn any unexpected exception into a StateFileError: the daemon must not crash."""
    try:
        yield
    except StateFileError:
        raise
    except Exception as exc:
        raise StateFileError(
            [
                Problem(
                    path_str,
                    None,
                    None,
                    None,
                    f"internal error while reading the file ({type(exc).__name__}: {exc}); "
                    "please report it with the file",
                )
            ]
        ) from exc


def format_of(path_str: str) -> str:
    suffix = Path(path_str).suffix.lower()
    if suffix in (".toml", ".json"):
        return suffix[1:]
    raise StateFileError(
        [
            Problem(
                path_str,
                None,
                None,
                None,
                f"unsupported file type {suffix or '(no extension)'!r}: use .toml or .json",
            )
        ]
    )


# A state file is a few incidents: kilobytes. Past this, refuse rather than exhaust memory.
MAX_STATE_BYTES = 4 * 1024 * 1024


def read_bytes(path: Path, path_str: str, max_bytes: int = MAX_STATE_BYTES) -> bytes:
    """The file's bytes; a ``StateFileError`` for anything but a regular file of at most
    ``max_bytes``. Never blocks: a FIFO is refused, not waited on."""

    def refuse(message: str) -> StateFileError:
        return StateFileError([Problem(path_str, None, None, None, message)])

    try:
        # O_NONBLOCK: opening a FIFO with no writer would otherwise wait forever.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise refuse(f"cannot read the file: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise refuse(f"not a regular file ({_file_type(st.st_mode)}): refused")
        if st.st_size > max_bytes:
            raise refuse(
                f"the file is {st.st_size} bytes, over the limit of {max_bytes} "
                "([broadcaster] state_file_max_bytes)"
            )
        chunks: list[bytes] = []
        size = 0
        while size <= max_bytes:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > max_bytes:
            raise refuse(
                f"the file grew over the limit of {max_bytes} bytes "
                "([broadcaster] state_file_max_bytes)"
            )
        return b"".join(chunks)
    except OSError as exc:
        raise refuse(f"cannot read the file: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def _file_type(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a plain file"


def read(path: Path, path_str: str, max_bytes: int = MAX_STATE_BYTES) -> tuple[str, bytes]:
    raw = read_bytes(path, path_str, max_bytes)
    return decode(raw, path_str), raw


def decode(raw: bytes, path_str: str) -> str:
    """The file's text; a ``StateFileError`` naming the line of the first byte that is not
    UTF-8."""
    try:
        # utf-8-sig: editors on Windows like to add a byte-order mark.
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise StateFileError(
            [
                Problem(
                    path_str,
                    line,
                    None,
                    None,
                    f"not valid UTF-8 (byte {raw[exc.start]:#04x}); save the file as UTF-8",
                )
            ]
        ) from None


def split_origin(origin: str) -> tuple[str, int | None]:
    head, sep, tail = origin.rpartition(":")
    if sep and head and tail.isdigit():
        return head, int(tail)
    return origin, None


# --------------------------------------------------------------------------------------
# Parsing with good syntax errors


def parse(text: str, path_str: str, fmt: str) -> tuple[Any, LazySourceMap]:
    try:
        data, smap = parse_toml(text, path_str) if fmt == "toml" else parse_json(text, path_str)
    except RecursionError:
        raise StateFileError(
            [Problem(path_str, None, None, None, f"{fmt.upper()} syntax error: nested too deeply")]
        ) from None
    try:
        check_value(data)  # the same bounds as every other door (depth, text)
    except JsonError as e:
        raise StateFileError([Problem(path_str, None, None, None, str(e))]) from None
    return data, smap


_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_TOML_AT_END = re.compile(r"\s*\(at end of document\)\s*$")


def parse_toml(text: str, path_str: str) -> tuple[Any, LazySourceMap]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StateFileError([_toml_syntax_problem(str(exc), text, path_str)]) from None
    origins: dict[Address, int] = {}
    entries = data.get("incidents")
    if isinstance(entries, list) and entries:
        lines = sourcemap.toml_header_lines(text)
        # Not one header per incident: written another way (inline, escaped key); the
        # full map knows.
        if len(lines) == len(entries):
            origins = {("incidents", i): n for i, n in enumerate(lines)}
    # tomllib refuses a key written twice, so there is no duplicate to look for.
    return data, LazySourceMap(
        lambda: sourcemap.toml_source_map(text), origins, duplicates_possible=False
    )


def _toml_syntax_problem(message: str, text: str, path_str: str) -> Problem:
    lines = text.split("\n")
    line: int | None = None
    column: int | None = None
    m = _TOML_POSITION.search(message)
    if m:
        line, column = int(m.group(1)), int(m.group(2))
        message = message[: m.start()]
    else:
        m = _TOML_AT_END.search(message)
        if m:
            message = message[: m.start()]
            line = len(text.rstrip("\n").split("\n"))
    try:
        smap = sourcemap.toml_source_map(text)
    except Exception:
        smap = SourceMap()
    if message.startswith("Unterminated string") and smap.unclosed_string is not None:
        line, column = smap.unclosed_string, None
        message = "string never closed (a \"\"\" or ''' without its closing quotes)"
    elif message.startswith(("Cannot overwrite", "Cannot declare")) and smap.duplicates:
        address, line, first = next(
            (d for d in smap.duplicates if d[1] == line), smap.duplicates[0]
        )
        column = None
        message = f"{address[-1]!r} is written twice (first at line {first})"
    text_at = lines[line - 1].strip() if line is not None and 0 < line <= len(lines) else ""
    hint = _toml_hint(message, text_at)
    detail = f"TOML syntax error: {message}"
    if column is not None:
        detail += f" at column {column}"
    if text_at:
        detail += f" in `{_shorten(text_at)}`"
    if hint:
        detail += f" ({hint})"
    incident_id, field_name = (None, None)
    if line is not None:
        incident_id, field_name = describe_address(smap.address_at(line), smap.ids)
    return Problem(path_str, line, incident_id, field_name, detail)


def _toml_hint(message: str, text_at: str) -> str | None:
    if message.startswith("Illegal character '\\n'"):
        return 'a quoted text must end on the same line; use """ for text on several lines'
    _, sep, value = text_at.partition("=")
    value = value.strip()
    if not sep or not message.startswith(("Invalid value", "Expected newline")):
        return None
    if re.match(r"\d{4}-\d{2}-\d{2}", value):
        return f"write datetimes like {DATETIME_EXAMPLE}"
    if value and value[0].isalpha() and value.split()[0] not in ("true", "false"):
        return 'text needs double quotes, e.g. status = "resolved"'
    return None


def parse_json(text: str, path_str: str) -> tuple[Any, LazySourceMap]:
    if not text.strip():
        # An empty file means no incidents, as for TOML.
        return {}, LazySourceMap(SourceMap, duplicates_possible=False)
    duplicates = False

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        # json keeps the last of keys written twice, silently: note that it happened.
        nonlocal duplicates
        obj = dict(pairs)
        if len(obj) != len(pairs):
            duplicates = True
        return obj

    try:
        data = json.loads(text, object_pairs_hook=pairs_hook)
    except json.JSONDecodeError as exc:
        raise StateFileError([_json_syntax_problem(exc, text, path_str)]) from None
    except RecursionError:
        raise StateFileError(
            [Problem(path_str, None, None, None, "JSON syntax error: nested too deeply")]
        ) from None
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise StateFileError(
            [
                Problem(
                    path_str,
                    None,
                    None,
                    None,
                    "text with an invalid character (a lone "
                    "surrogate such as \\ud800): not valid Unicode, cannot be posted",
                )
            ]
        ) from None
    origins: dict[Address, int] = {}
    entries = data.get("incidents") if isinstance(data, dict) else None
    if not duplicates and isinstance(entries, list) and entries:
        lines = sourcemap.json_element_lines(text, "incidents")
        if lines is not None and len(lines) == len(entries):
            origins = {("incidents", i): n for i, n in enumerate(lines)}
    return data, LazySourceMap(
        lambda: sourcemap.json_source_map(text)[0], origins, duplicates_possible=duplicates
    )


def _json_syntax_problem(exc: json.JSONDecodeError, text: str, path_str: str) -> Problem:
    pos, line = exc.pos, exc.lineno
    column: int | None = exc.colno
    # Some json messages end in "at", expecting the position to follow.
    message = exc.msg.removesuffix(" at")
    before = text[:pos].rstrip()
    hint = None
    if message.startswith("Expecting ',' delimiter") and "\n" in text[len(before) : pos]:
        # json reports a missing comma where the next item starts; ops look for it at the
        # end of the previous line.
        line = before.count("\n") + 1
        column = None
        message = "missing ',' at the end of this line"
        pos = len(before)
    elif before.endswith(",") and message.startswith(
        ("Expecting property name", "Expecting value")
    ):
        line = before.count("\n") + 1
        column = None
        message = "trailing ',' before the closing bracket"
        hint = "JSON allows no comma after the last item"
        pos = len(before) - 1
    elif message.startswith("Invalid control character") and text[pos : pos + 1] in "\r\n":
        hint = "a text must end on the same line; write \\n for a line break"
    lines = text.split("\n")
    text_at = lines[line - 1].strip() if 0 < line <= len(lines) else ""
    detail = f"JSON syntax error: {message}"
    if column is not None:
        detail += f" at column {column}"
    if text_at:
        detail += f" in `{_shorten(text_at)}`"
    if hint:
        detail += f" ({hint})"
    try:
        smap, where = sourcemap.json_source_map(text[:pos])
        incident_id, field_name = describe_address(where, smap.ids)
    except Exception:
        incident_id, field_name = None, None
    return Problem(path_str, line, incident_id, field_name, detail)


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
