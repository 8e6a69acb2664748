"""Reading, validating and updating the state file ops edit by hand.

The file is written under stress, often at night, so every problem is reported at once and
each names the file, the line, the incident and the field. Neither ``tomllib`` nor ``json``
reports positions for values, so a small source scanner maps every key back to its line;
it runs only when there is a problem to locate (a valid file just gets its incidents' lines).
Any malformed input ends in :class:`StateFileError`, never in another exception: the
daemon must keep running on the previous state and tell ops exactly what to fix.
"""

from __future__ import annotations

import contextlib
import difflib
import enum
import json
import os
import re
import stat
import tempfile
import tomllib
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import MISSING as dataclass_missing
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import tomlkit

from .model import (
    ALL_LANGUAGES,
    ID_FIELD,
    INCIDENT_FIELDS,
    FieldKind,
    FieldRule,
    Incident,
    IncidentKind,
    Localized,
)

__all__ = [
    "INCIDENT_KEYS",
    "Problem",
    "StateFileError",
    "apply_changes",
    "load_state",
    "load_timeline",
    "parse_incident",
]

# A path from the document root to a value: ("incidents", 0, "title", "fr").
Address = tuple[str | int, ...]

INCIDENT_KEYS = tuple(INCIDENT_FIELDS)
_STATE_TOP_KEYS = ("incidents",)
_TIMELINE_TOP_KEYS = ("step",)
_STEP_KEYS = ("at", "incidents")
_ID_RE = re.compile(r"[a-z0-9._-]+")
_DATETIME_EXAMPLE = "2017-11-09T07:23:00+01:00"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a state file, located as precisely as the source allows."""

    path: str
    line: int | None
    incident_id: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        parts = [where]
        subject = []
        if self.incident_id is not None:
            subject.append(f"incident {self.incident_id!r}")
        if self.field is not None:
            subject.append(f"field {self.field!r}")
        if subject:
            parts.append(" ".join(subject))
        parts.append(self.message)
        return ": ".join(parts)


class StateFileError(Exception):
    """The state file (or an incident given as data) cannot be used; ``problems`` says why."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


# --------------------------------------------------------------------------------------
# Public API


def load_state(path: Path, languages: Collection[str] = ()) -> list[Incident]:
    """Read and validate the state file; ``languages`` are those the channels post in."""
    path_str = str(path)
    with _no_surprises(path_str):
        fmt = _format_of(path_str)
        text, _ = _read(Path(path), path_str)
        return _state_from_text(text, path_str, fmt, languages)


def load_timeline(
    path: Path, languages: Collection[str] = ()
) -> list[tuple[datetime, list[Incident]]]:
    """Read a replayable day: ``[[step]]`` entries, each ``at`` a time with its incidents."""
    path_str = str(path)
    with _no_surprises(path_str):
        fmt = _format_of(path_str)
        text, _ = _read(Path(path), path_str)
        return _timeline_from_text(text, path_str, fmt, languages)


def parse_incident(
    data: Mapping[str, Any],
    *,
    origin: str,
    languages: Collection[str] = (),
    current: Incident | None = None,
) -> Incident:
    """Validate one incident given as plain data; problems are located at ``origin``.

    ``origin`` is ``"path:line"`` (or any label); it becomes ``Incident.origin``. With
    ``current``, ``data`` updates that incident: fields it does not carry keep their value,
    and the whole result is validated.
    """
    path_str, line = _split_origin(origin)
    with _no_surprises(path_str):
        report = _Report(path_str, None, fallback_line=line)
        incident = _check_incident(data, report, (), origin, languages, current=current)
        report.raise_if_any()
        assert incident is not None  # no problems means it was built
        return incident


def apply_changes(
    path: Path,
    incident_id: str,
    changes: Mapping[str, Any],
    *,
    languages: Collection[str] = (),
) -> None:
    """Update fields of one incident in place, keeping the file's formatting and comments.

    A value of ``None`` removes the field. A localized value given as a mapping updates only
    those languages when the field already is a table; otherwise the value replaces the
    field as given. The result is validated (with ``languages``) before anything is written,
    and written atomically, so a refused change leaves the file untouched.
    """
    path_str = str(path)
    with _no_surprises(path_str):
        fmt = _format_of(path_str)
        # Write through a symlink rather than replacing it with a regular file.
        target = Path(os.path.realpath(path))
        text, raw = _read(target, path_str)
        _check_change_keys(path_str, incident_id, changes)
        if fmt == "toml":
            new_text = _apply_toml(text, path_str, incident_id, changes)
        else:
            new_text = _apply_json(text, path_str, incident_id, changes)
        try:
            _state_from_text(new_text, path_str, fmt, languages)
        except StateFileError as exc:
            raise StateFileError(
                [
                    Problem(p.path, p.line, p.incident_id, p.field, f"change refused: {p.message}")
                    for p in exc.problems
                ]
            ) from None
        encoded = new_text.encode("utf-8")
        if raw.startswith(b"\xef\xbb\xbf"):
            encoded = b"\xef\xbb\xbf" + encoded
        _write_atomic(target, path_str, encoded, expected=raw)


# --------------------------------------------------------------------------------------
# Reading


@contextlib.contextmanager
def _no_surprises(path_str: str) -> Iterator[None]:
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


def _format_of(path_str: str) -> str:
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


def _read(path: Path, path_str: str) -> tuple[str, bytes]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise StateFileError(
            [Problem(path_str, None, None, None, f"cannot read the file: {exc.strerror or exc}")]
        ) from None
    try:
        # utf-8-sig: editors on Windows like to add a byte-order mark.
        return raw.decode("utf-8-sig"), raw
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


def _split_origin(origin: str) -> tuple[str, int | None]:
    head, sep, tail = origin.rpartition(":")
    if sep and head and tail.isdigit():
        return head, int(tail)
    return origin, None


# --------------------------------------------------------------------------------------
# Source maps: where each key of the document is written


@dataclass
class _SourceMap:
    lines: dict[Address, int] = field(default_factory=dict)
    # Object address -> the id written in it, to name incidents in syntax errors.
    ids: dict[Address, str] = field(default_factory=dict)
    by_line: dict[int, Address] = field(default_factory=dict)
    # Key line -> the table it is written in (TOML only), to know where a table's keys end.
    sections: dict[int, Address] = field(default_factory=dict)
    # (address, line, first line) of keys written twice.
    duplicates: list[tuple[Address, int, int]] = field(default_factory=list)
    # Line where a string starts that never ends.
    unclosed_string: int | None = None

    def line(self, address: Address) -> int | None:
        """Line of ``address``, or of its closest written ancestor."""
        for n in range(len(address), -1, -1):
            found = self.lines.get(address[:n])
            if found is not None:
                return found
        return None

    def address_at(self, line: int) -> Address:
        """The address being written at ``line`` (or on the nearest line before it)."""
        for n in range(line, 0, -1):
            if n in self.by_line:
                return self.by_line[n]
        return ()


def _describe_address(
    address: Address, ids: Mapping[Address, str]
) -> tuple[str | None, str | None]:
    """(incident id, field name) for an address, as far as they can be told."""
    start = 0
    incident_id = None
    for k in range(len(address) - 1, 0, -1):
        if isinstance(address[k], int) and address[k - 1] == "incidents":
            incident_id = ids.get(address[: k + 1])
            start = k + 1
            break
    else:
        # Outside any incident (a timeline step, the top level): name what follows the
        # last list index.
        for k in range(len(address) - 1, -1, -1):
            if isinstance(address[k], int):
                start = k + 1
                break
    names = []
    for part in address[start:]:
        if isinstance(part, int):
            break
        names.append(part)
    return incident_id, ".".join(names) or None


_KEY_PART = re.compile(r"""\s*(?:([A-Za-z0-9_-]+)|"((?:[^"\\]|\\.)*)"|'([^']*)')\s*""")
_TOML_STRING_VALUE = re.compile(r"""\s*(?:"((?:[^"\\\n]|\\.)*)"|'([^'\n]*)')""")


def _unescape(text: str) -> str:
    try:
        return json.loads(f'"{text}"')
    except ValueError:
        return text


def _split_key(text: str, pos: int = 0) -> tuple[tuple[str, ...], int] | None:
    """Parse a (dotted) TOML key starting at ``pos``: its parts and the index after it."""
    parts: list[str] = []
    while True:
        m = _KEY_PART.match(text, pos)
        if not m:
            return None
        bare, basic, literal = m.groups()
        if bare is not None:
            parts.append(bare)
        elif basic is not None:
            parts.append(_unescape(basic))
        else:
            parts.append(literal)
        pos = m.end()
        if pos < len(text) and text[pos] == ".":
            pos += 1
            continue
        return tuple(parts), pos


def _toml_statement_lines(lines: list[str]) -> Iterator[tuple[int, str | None]]:
    """Yield (line number, text) where text is None for lines continuing a value.

    Tracks strings (including multi-line ones) and brackets, so a line inside a multi-line
    string or array is never mistaken for a key or a table header. If a multi-line string
    opened at line n never closes, the last item yielded is (-n, None).
    """
    in_str: str | None = None
    opened_at = 0
    depth = 0
    for n, line in enumerate(lines, 1):
        if in_str is None and depth == 0:
            yield n, line
            if line.lstrip().startswith("["):
                continue  # a table header: its brackets are not values
        else:
            yield n, None
        i, end = 0, len(line)
        while i < end:
            c = line[i]
            if in_str is None:
                if c == "#":
                    break
                if c in "\"'":
                    in_str = c * 3 if line.startswith(c * 3, i) else c
                    opened_at = n
                    i += len(in_str)
                    continue
                if c in "[{":
                    depth += 1
                elif c in "]}":
                    depth = max(0, depth - 1)
                i += 1
            elif c == "\\" and in_str[0] == '"':
                i += 2
            elif len(in_str) == 1:
                if c == in_str:
                    in_str = None
                i += 1
            elif line.startswith(in_str, i):
                # Up to two quotes right before the closing delimiter belong to the text.
                j = i + 3
                while j < end and line[j] == in_str[0] and j - i < 5:
                    j += 1
                in_str = None
                i = j
            else:
                i += 1
        if in_str is not None and len(in_str) == 1:
            # A one-line string cannot span lines: TOML will say so; keep mapping the rest.
            in_str = None
    if in_str is not None:
        yield -opened_at, None  # signals an unterminated multi-line string


def _toml_source_map(text: str) -> _SourceMap:
    smap = _SourceMap()
    table: Address = ()
    aot_counts: dict[Address, int] = {}
    written_keys: dict[Address, int] = {}

    def resolve(keys: tuple[str, ...], array: bool) -> Address:
        address: Address = ()
        for j, key in enumerate(keys):
            address += (key,)
            if array and j == len(keys) - 1:
                index = aot_counts.get(address, 0)
                aot_counts[address] = index + 1
                address += (index,)
            elif address in aot_counts:
                address += (aot_counts[address] - 1,)
        return address

    for n, line in _toml_statement_lines(text.split("\n")):
        if n < 0:
            smap.unclosed_string = -n
            continue
        if line is None:
            continue
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("["):
            array = stripped.startswith("[[")
            parsed = _split_key(stripped, 2 if array else 1)
            if parsed is None:
                continue
            table = resolve(parsed[0], array)
            if array:
                smap.lines.setdefault(table[:-1], n)
            if not array and table in written_keys:
                smap.duplicates.append((table, n, written_keys[table]))
            written_keys.setdefault(table, n)
            smap.lines.setdefault(table, n)
            smap.by_line[n] = table
            continue
        parsed = _split_key(line)
        if parsed is None or not line[parsed[1] :].startswith("="):
            smap.by_line[n] = table
            continue
        keys, after = parsed
        address = table + keys
        if address in written_keys:
            smap.duplicates.append((address, n, written_keys[address]))
        written_keys.setdefault(address, n)
        for k in range(len(table) + 1, len(address) + 1):
            smap.lines.setdefault(address[:k], n)
        smap.by_line[n] = address
        smap.sections[n] = table
        if keys == (ID_FIELD,):
            m = _TOML_STRING_VALUE.match(line, after + 1)
            if m:
                basic, literal = m.groups()
                smap.ids[table] = _unescape(basic) if basic is not None else literal
    return smap


_JSON_TOKEN = re.compile(r"""\s*(?:("(?:[^"\\]|\\.)*")|([{}\[\]:,])|([^\s{}\[\]:,"]+))""")


@dataclass
class _JsonFrame:
    address: Address
    is_object: bool
    key: str | None = None
    expecting_key: bool = True
    index: int = 0
    seen: set[str] = field(default_factory=set)


def _json_source_map(text: str) -> tuple[_SourceMap, Address]:
    """Map keys to lines; tolerant of truncated input, it also returns where it stopped."""
    smap = _SourceMap()
    stack: list[_JsonFrame] = []
    pos, line = 0, 1

    def value_address(at_line: int) -> Address:
        if not stack:
            smap.lines.setdefault((), at_line)
            return ()
        top = stack[-1]
        if top.is_object:
            return (*top.address, top.key or "")
        address = (*top.address, top.index)
        smap.lines.setdefault(address, at_line)
        smap.by_line.setdefault(at_line, address)
        return address

    while True:
        m = _JSON_TOKEN.match(text, pos)
        if not m:
            break
        start = m.start(m.lastindex or 0)
        line += text.count("\n", pos, start)
        pos = m.end()
        string, punct, _bare = m.groups()
        top = stack[-1] if stack else None
        if string is not None:
            try:
                decoded = json.loads(string)
            except ValueError:
                decoded = string[1:-1]
            if top is not None and top.is_object and top.expecting_key:
                top.key = decoded
                top.expecting_key = False
                address = (*top.address, decoded)
                if decoded in top.seen:
                    smap.duplicates.append((address, line, smap.lines.get(address, line)))
                top.seen.add(decoded)
                # json keeps the last of duplicate keys, so that is the one to point at.
                smap.lines[address] = line
                smap.by_line[line] = address
            else:
                value_address(line)
                if top is not None and top.is_object and top.key == ID_FIELD:
                    smap.ids[top.address] = decoded
        elif punct in ("{", "["):
            stack.append(_JsonFrame(value_address(line), is_object=punct == "{"))
        elif punct in ("}", "]"):
            if stack:
                stack.pop()
        elif punct == ",":
            if top is not None:
                if top.is_object:
                    top.expecting_key = True
                    top.key = None
                else:
                    top.index += 1
        elif punct is None:
            value_address(line)
    where: Address = ()
    if stack:
        top = stack[-1]
        where = top.address + ((top.key,) if top.is_object and top.key is not None else ())
    return smap, where


class _LazySourceMap:
    """The source map of a file that parsed, built only when a problem must be located.

    Mapping every key costs as much as parsing; a valid file needs only the line where each
    incident starts (its ``origin``), which a cheap scan finds: ``origins`` holds them. The
    scan is exact for a file that validates (the only case where origins are used); problems
    are always located with the full map. ``duplicates_possible`` is False when the parser
    saw no key written twice.
    """

    def __init__(
        self,
        build: Callable[[], _SourceMap],
        origins: Mapping[Address, int] | None = None,
        *,
        duplicates_possible: bool = True,
    ) -> None:
        self._build = build
        self._full: _SourceMap | None = None
        self.origins = dict(origins or {})
        self.duplicates_possible = duplicates_possible

    def full(self) -> _SourceMap:
        if self._full is None:
            self._full = self._build()
        return self._full


_TOML_INCIDENTS_HEADER = r"""\n[ \t]*+\[\[[ \t]*+(?:incidents|"incidents"|'incidents')[ \t]*+\]\]"""
_TOML_HEADER = re.compile(_TOML_INCIDENTS_HEADER)
# Everything up to the next [[incidents]] header, stepping over strings and comments, so
# a header written inside a multi-line string is not taken for one. Possessive: no
# backtracking, linear time.
_TOML_UP_TO_HEADER = re.compile(
    r"""(?:
        [^"'\#\n]++
      | "{3}(?:[^"\\]++|\\.|"(?!""))*+"{3,5}
      | '{3}(?:[^']++|'(?!''))*+'{3,5}
      | "(?:[^"\\\n]++|\\.)*+"
      | '[^'\n]*+'
      | \#[^\n]*+
      | \n(?!"""
    + _TOML_INCIDENTS_HEADER[2:]
    + r""")
    )*+(?P<header>"""
    + _TOML_INCIDENTS_HEADER
    + ")",
    re.DOTALL | re.VERBOSE,
)


def _toml_header_lines(text: str) -> list[int]:
    """Lines of the ``[[incidents]]`` headers of a document ``tomllib`` accepted, in order.

    Only headers written as ``[[incidents]]`` (spaces and quotes allowed) are found; the
    caller compares the count with the incidents parsed.
    """
    padded = "\n" + text  # every header now follows a newline, the first one too
    if '"""' not in text and "'''" not in text:
        # No multi-line string, so no line inside a string. (A line inside a multi-line
        # array would be a nested array, which no valid file has.)
        starts = [m.start() for m in _TOML_HEADER.finditer(padded)]
    else:
        starts = []
        pos = 0
        while (m := _TOML_UP_TO_HEADER.match(padded, pos)) is not None:
            starts.append(m.start("header"))
            pos = m.end()
    lines, line, counted = [], 0, 0
    for start in starts:
        # The header is on the line after the newline at ``start`` of ``padded``.
        line += padded.count("\n", counted, start + 1)
        counted = start + 1
        lines.append(line)
    return lines


_JSON_SPACE = re.compile(r"[ \t\n\r]*")


def _json_element_lines(text: str, key: str) -> list[int] | None:
    """Line where each item of the top-level array ``key`` starts, in valid JSON text.

    None when the document is not shaped so; the full map then finds the lines.
    """
    scan = json.JSONDecoder().scan_once
    space = _JSON_SPACE.match
    starts: list[int] | None = None
    try:
        pos = space(text).end()
        if text[pos] != "{":
            return None
        pos = space(text, pos + 1).end()
        while text[pos] == '"':
            name, pos = json.decoder.scanstring(text, pos + 1)
            pos = space(text, space(text, pos).end() + 1).end()  # over the ':'
            if name == key and text[pos] == "[":
                starts = []
                pos = space(text, pos + 1).end()
                while text[pos] != "]":
                    starts.append(pos)
                    _, pos = scan(text, pos)
                    pos = space(text, pos).end()
                    if text[pos] == ",":
                        pos = space(text, pos + 1).end()
                pos += 1
            else:
                _, pos = scan(text, pos)
            pos = space(text, pos).end()
            if text[pos] == ",":
                pos = space(text, pos + 1).end()
    except (IndexError, StopIteration, ValueError):
        return None
    if starts is None:
        return None
    lines, line, counted = [], 1, 0
    for start in starts:
        line += text.count("\n", counted, start)
        counted = start
        lines.append(line)
    return lines


# --------------------------------------------------------------------------------------
# Parsing with good syntax errors


def _parse(text: str, path_str: str, fmt: str) -> tuple[Any, _LazySourceMap]:
    if fmt == "toml":
        return _parse_toml(text, path_str)
    return _parse_json(text, path_str)


_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_TOML_AT_END = re.compile(r"\s*\(at end of document\)\s*$")


def _parse_toml(text: str, path_str: str) -> tuple[Any, _LazySourceMap]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StateFileError([_toml_syntax_problem(str(exc), text, path_str)]) from None
    origins: dict[Address, int] = {}
    entries = data.get("incidents")
    if isinstance(entries, list) and entries:
        lines = _toml_header_lines(text)
        # Not one header per incident: written another way (inline, escaped key); the
        # full map knows.
        if len(lines) == len(entries):
            origins = {("incidents", i): n for i, n in enumerate(lines)}
    # tomllib refuses a key written twice, so there is no duplicate to look for.
    return data, _LazySourceMap(lambda: _toml_source_map(text), origins, duplicates_possible=False)


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
        smap = _toml_source_map(text)
    except Exception:
        smap = _SourceMap()
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
        incident_id, field_name = _describe_address(smap.address_at(line), smap.ids)
    return Problem(path_str, line, incident_id, field_name, detail)


def _toml_hint(message: str, text_at: str) -> str | None:
    if message.startswith("Illegal character '\\n'"):
        return 'a quoted text must end on the same line; use """ for text on several lines'
    _, sep, value = text_at.partition("=")
    value = value.strip()
    if not sep or not message.startswith(("Invalid value", "Expected newline")):
        return None
    if re.match(r"\d{4}-\d{2}-\d{2}", value):
        return f"write datetimes like {_DATETIME_EXAMPLE}"
    if value and value[0].isalpha() and value.split()[0] not in ("true", "false"):
        return 'text needs double quotes, e.g. status = "resolved"'
    return None


def _parse_json(text: str, path_str: str) -> tuple[Any, _LazySourceMap]:
    if not text.strip():
        # An empty file means no incidents, as for TOML.
        return {}, _LazySourceMap(_SourceMap, duplicates_possible=False)
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
        lines = _json_element_lines(text, "incidents")
        if lines is not None and len(lines) == len(entries):
            origins = {("incidents", i): n for i, n in enumerate(lines)}
    return data, _LazySourceMap(
        lambda: _json_source_map(text)[0], origins, duplicates_possible=duplicates
    )


def _json_syntax_problem(exc: json.JSONDecodeError, text: str, path_str: str) -> Problem:
    pos, line, column = exc.pos, exc.lineno, exc.colno
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
        smap, where = _json_source_map(text[:pos])
        incident_id, field_name = _describe_address(where, smap.ids)
    except Exception:
        incident_id, field_name = None, None
    return Problem(path_str, line, incident_id, field_name, detail)


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------------------
# Validation


class _Report:
    """Collects the problems of one file, locating each through the source map."""

    def __init__(
        self, path: str, smap: _LazySourceMap | None, *, fallback_line: int | None = None
    ) -> None:
        self.path = path
        self.smap = smap
        self.fallback_line = fallback_line
        self.problems: list[Problem] = []

    def origin_line(self, address: Address) -> int | None:
        """Line of the incident at ``address``, for its origin (not to locate a problem)."""
        if self.smap is not None:
            found = self.smap.origins.get(address)
            if found is not None:
                return found
        return self.line_of(address)

    def line_of(self, address: Address) -> int | None:
        if self.smap is not None:
            # Built outside the try: a scanner failure is an internal error, as ever.
            smap = self.smap.full()
            try:
                found = smap.line(address)
            except Exception:
                found = None
            if found is not None:
                return found
        return self.fallback_line

    def add(
        self,
        address: Address,
        message: str,
        *,
        incident_id: str | None = None,
        field: str | None = None,
        line: int | None = None,
    ) -> None:
        if line is None:
            line = self.line_of(address)
        self.problems.append(Problem(self.path, line, incident_id, field, message))

    def raise_if_any(self) -> None:
        if self.problems:
            # Top to bottom reads best; problems without a line go last.
            ordered = sorted(self.problems, key=lambda p: (p.line is None, p.line or 0))
            raise StateFileError(ordered)


def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, datetime):
        return "a datetime"
    if isinstance(value, date):
        return "a date"
    if isinstance(value, time):
        return "a time"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def _unknown_key_message(key: str, known: Collection[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    if close:
        return f"unknown key {key!r} (did you mean {close[0]!r}?)"
    return f"unknown key {key!r} (known keys: {', '.join(known)})"


def _check_top_level(
    data: Any, report: _Report, known: tuple[str, ...], list_key: str, header: str
) -> list[Any]:
    """The list of entries under ``list_key``; problems for anything else at the top."""
    if not isinstance(data, Mapping):
        report.add((), f"expected a table (JSON object) at the top, got {_kind_of(data)}")
        return []
    for key in data:
        if key not in known:
            message = _unknown_key_message(key, known)
            if key in INCIDENT_KEYS:
                message += (
                    f"; it looks like an incident field: is the {header} line above it missing?"
                )
            report.add((key,), message, field=key)
    entries = data.get(list_key)
    if entries is None:
        return []
    if isinstance(entries, Mapping):
        report.add(
            (list_key,),
            f"{list_key!r} must be a list: write each entry under {header} (double brackets)",
            field=list_key,
        )
        return []
    if not isinstance(entries, list):
        report.add(
            (list_key,), f"{list_key!r} must be a list, got {_kind_of(entries)}", field=list_key
        )
        return []
    return entries


def _state_from_text(
    text: str, path_str: str, fmt: str, languages: Collection[str]
) -> list[Incident]:
    data, smap = _parse(text, path_str, fmt)
    report = _Report(path_str, smap)
    _report_duplicate_keys(smap, report)
    entries = _check_top_level(data, report, _STATE_TOP_KEYS, "incidents", "[[incidents]]")
    incidents = _check_incidents(entries, ("incidents",), report, languages)
    report.raise_if_any()
    return incidents


def _timeline_from_text(
    text: str, path_str: str, fmt: str, languages: Collection[str]
) -> list[tuple[datetime, list[Incident]]]:
    data, smap = _parse(text, path_str, fmt)
    report = _Report(path_str, smap)
    _report_duplicate_keys(smap, report)
    steps = _check_top_level(data, report, _TIMELINE_TOP_KEYS, "step", "[[step]]")
    result: list[tuple[datetime, list[Incident]]] = []
    previous: tuple[datetime, Address] | None = None
    for s, step in enumerate(steps):
        base: Address = ("step", s)
        label = f"step #{s + 1}"
        if not isinstance(step, Mapping):
            report.add(base, f"{label}: expected a table, got {_kind_of(step)}")
            continue
        for key in step:
            if key not in _STEP_KEYS:
                report.add(
                    (*base, key), f"{label}: {_unknown_key_message(key, _STEP_KEYS)}", field=key
                )
        at = None
        if step.get("at") is None:
            report.add(
                (*base, "at"), f"{label}: missing 'at' (when this snapshot applies)", field="at"
            )
        else:
            at, error = _to_datetime(step["at"])
            if error:
                report.add((*base, "at"), f"{label}: {error}", field="at")
        if at is not None:
            if previous is not None and at <= previous[0]:
                at_line = report.line_of(previous[1])
                where = f" at line {at_line}" if at_line is not None else ""
                report.add(
                    (*base, "at"),
                    f"{label}: {at.isoformat()} is not after the previous step"
                    f"{where} ({previous[0].isoformat()}); steps must be in time order",
                    field="at",
                )
            previous = (at, (*base, "at"))
        entries = step.get("incidents", [])
        if not isinstance(entries, list):
            report.add(
                (*base, "incidents"),
                f"{label}: 'incidents' must be a list, got {_kind_of(entries)}",
                field="incidents",
            )
            entries = []
        incidents = _check_incidents(entries, (*base, "incidents"), report, languages)
        if at is not None:
            result.append((at, incidents))
    report.raise_if_any()
    result.sort(key=lambda item: item[0])
    return result


def _report_duplicate_keys(smap: _LazySourceMap, report: _Report) -> None:
    # Only JSON gets here with duplicates (TOML refuses them as syntax errors); json keeps
    # the last value silently, which would hide an ops edit.
    if not smap.duplicates_possible:
        return
    full = smap.full()
    for address, line, first in full.duplicates:
        incident_id, field_name = _describe_address(address, full.ids)
        report.add(
            address,
            f"key {address[-1]!r} is written twice (first at line {first}); only the last "
            "one would count",
            incident_id=incident_id,
            field=field_name,
            line=line,
        )


def _check_incidents(
    entries: list[Any], base: Address, report: _Report, languages: Collection[str]
) -> list[Incident]:
    incidents: list[Incident] = []
    # id -> address of its first id key; lines are looked up only to report a problem.
    first_seen: dict[str, Address] = {}
    for i, entry in enumerate(entries):
        address = (*base, i)
        line = report.origin_line(address)
        origin = f"{report.path}:{line}" if line is not None else report.path
        incident = _check_incident(entry, report, address, origin, languages, number=i + 1)
        raw_id = entry.get(ID_FIELD) if isinstance(entry, Mapping) else None
        if isinstance(raw_id, str) and raw_id:
            if raw_id in first_seen:
                where = report.line_of(first_seen[raw_id])
                report.add(
                    (*address, ID_FIELD),
                    f"duplicate id {raw_id!r}: already used by the incident at line {where}"
                    if where is not None
                    else f"duplicate id {raw_id!r}: already used by another incident",
                    incident_id=raw_id,
                    field=ID_FIELD,
                    line=report.line_of((*address, ID_FIELD)),
                )
                continue
            first_seen[raw_id] = (*address, ID_FIELD)
        if incident is not None:
            incidents.append(incident)
    return incidents


# A field whose value was refused: the incident is not built, other fields are still checked.
_INVALID: Any = object()
_Bad = Callable[[str, str], None]


def _check_incident(
    data: Any,
    report: _Report,
    base: Address,
    origin: str,
    languages: Collection[str],
    *,
    number: int | None = None,
    current: Incident | None = None,
) -> Incident | None:
    """The incident ``data`` describes, or None after reporting every problem with it.

    With ``current``, ``data`` is a partial update of it: the fields it does not carry keep
    their current values, and the result is checked as a whole.
    """
    before = len(report.problems)
    label = f"incident #{number}" if number is not None else "incident"
    if not isinstance(data, Mapping):
        report.add(base, f"{label}: expected a table (JSON object), got {_kind_of(data)}")
        return None

    # The raw value of every field; None when not written (JSON writers emit null for
    # "not set"). A current value is checked again, as written data would be.
    raw: dict[str, Any] = {}
    for name in INCIDENT_FIELDS:
        if name in data or current is None:
            raw[name] = data.get(name)
        else:
            raw[name] = _as_written(getattr(current, name))
    raw_id = raw[ID_FIELD]
    incident_id = raw_id if isinstance(raw_id, str) and raw_id else None

    def bad(name: str, message: str) -> None:
        report.add(base + tuple(name.split(".")), message, incident_id=incident_id, field=name)

    for key in data:
        if key not in INCIDENT_FIELDS:
            bad(str(key), _unknown_key_message(str(key), INCIDENT_KEYS))

    # Field by field, in the order of the kinds below (problems on one line keep it).
    kind: IncidentKind | None = IncidentKind.INCIDENT
    values: dict[str, Any] = {}
    for field_kind in _CHECK_ORDER:
        for name, rule in INCIDENT_FIELDS.items():
            if rule.kind is not field_kind:
                continue
            value = raw[name]
            if value is None:
                values[name] = _DEFAULTS.get(name)
                if rule.required_for == _EVERY_KIND:
                    bad(name, _missing(name, rule, label, kind))
                continue
            check = _CHECKERS[field_kind]
            values[name] = check(value, name, rule, bad, _Context(kind, languages))
            if field_kind is FieldKind.KIND:
                kind = values[name] if values[name] is not _INVALID else None

    # Rules across fields: what a kind requires or forbids, defaults, order in time.
    if kind is not None:
        for name, rule in INCIDENT_FIELDS.items():
            if rule.required_for == _EVERY_KIND:
                continue
            if kind in rule.required_for and raw[name] is None:
                bad(name, _missing(name, rule, label, kind))
            if rule.only_for is not None and rule.only_for is not kind and raw[name] is not None:
                bad(
                    name,
                    f"{name} is only for a {rule.only_for.value} "
                    f'({_KIND_FIELD} = "{rule.only_for.value}")',
                )
        for name, rule in INCIDENT_FIELDS.items():
            if rule.default_from is not None and raw[name] is None and values[name] is None:
                values[name] = values[rule.default_from]
    for name, rule in INCIDENT_FIELDS.items():
        if rule.only_for is not None and rule.only_for is not kind:
            continue  # refused above (or the kind was)
        late = values[name]
        for other, strict in ((rule.after, True), (rule.not_before, False)):
            early = values.get(other) if other is not None else None
            if not isinstance(late, datetime) or not isinstance(early, datetime):
                continue
            if strict and late <= early:
                bad(
                    name,
                    f"{name} ({late.isoformat()}) must be after {other} ({early.isoformat()})",
                )
            elif not strict and late < early:
                bad(name, f"{name} ({late.isoformat()}) is before {other} ({early.isoformat()})")

    if len(report.problems) > before:
        return None
    return Incident(**values, origin=origin)


@dataclass(frozen=True)
class _Context:
    kind: IncidentKind | None  # None when the kind itself was refused
    languages: Collection[str]


def _missing(name: str, rule: FieldRule, label: str, kind: IncidentKind | None) -> str:
    if rule.kind is FieldKind.ID:
        return f"{label} has no {name} {rule.missing}".rstrip()
    message = f"missing {name}"
    if rule.missing:
        message += f" {rule.missing}"
    if rule.kind is FieldKind.ENUM and kind is not None:
        message += f" (expected one of: {', '.join(_choices(rule, kind))})"
    if rule.kind is FieldKind.DATETIME:
        message += f", e.g. {name} = {_DATETIME_EXAMPLE}"
    return message


def _choices(rule: FieldRule, kind: IncidentKind | None) -> tuple[str, ...]:
    if isinstance(rule.choices, Mapping):
        return rule.choices[kind] if kind is not None else ()
    return rule.choices


def _as_written(value: Any) -> Any:
    """A current field value as a file would hold it, for the checks (None if not set)."""
    if isinstance(value, Localized):
        return dict(value.values)
    if value == ():
        return None
    return value


def _check_id(value: Any, name: str, rule: FieldRule, bad: _Bad, ctx: _Context) -> Any:
    if not isinstance(value, str):
        bad(name, f"expected a string, got {_kind_of(value)}")
        return _INVALID
    if not _ID_RE.fullmatch(value):
        wrong = sorted({c for c in value if not _ID_RE.fullmatch(c)})
        shown = ", ".join(repr(c) for c in wrong) if wrong else "none"
        suggestion = re.sub(r"[^a-z0-9._-]+", "-", value.lower()).strip("-")
        bad(
            name,
            f"invalid id {value!r}: use only lowercase letters, digits, '.', '_' and '-' "
            f"(not allowed: {shown})" + (f"; e.g. {suggestion!r}" if suggestion else ""),
        )
        return _INVALID
    return value


def _check_kind(value: Any, name: str, rule: FieldRule, bad: _Bad, ctx: _Context) -> Any:
    if not isinstance(value, str):
        bad(name, f"expected a string, got {_kind_of(value)}")
        return _INVALID
    if value not in tuple(IncidentKind):
        expected = ", ".join(k.value for k in IncidentKind)
        bad(name, f"unknown {name} {value!r} (expected one of: {expected})")
        return _INVALID
    return IncidentKind(value)


def _check_enum(value: Any, name: str, rule: FieldRule, bad: _Bad, ctx: _Context) -> Any:
    if not isinstance(value, str):
        bad(name, f"expected a string, got {_kind_of(value)}")
        return _INVALID
    if ctx.kind is None and isinstance(rule.choices, Mapping):
        return _INVALID  # the words allowed depend on the kind, which was refused
    allowed = _choices(rule, ctx.kind)
    if value in allowed:
        return value
    message = f"unknown {name} {value!r} (expected one of: {', '.join(allowed)})"
    if isinstance(rule.choices, Mapping):
        # A word of another kind: say which kind it belongs to.
        for other, words in rule.choices.items():
            if other is ctx.kind or value not in words:
                continue
            if ctx.kind is IncidentKind.INCIDENT:
                message += f'; for a {other.value}, add {_KIND_FIELD} = "{other.value}"'
            else:
                message += f"; {value!r} is an {other.value} {name}"
            break
    bad(name, message)
    return _INVALID


def _check_localized_field(value: Any, name: str, rule: FieldRule, bad: _Bad, ctx: _Context) -> Any:
    localized = _check_localized(value, name, bad, ctx.languages)
    return _INVALID if localized is None else localized


def _check_strings_field(value: Any, name: str, rule: FieldRule, bad: _Bad, ctx: _Context) -> Any:
    before = [0]

    def counting(field_name: str, message: str) -> None:
        before[0] += 1
        bad(field_name, message)

    strings = _check_string_list(value, name, counting)
    return _INVALID if before[0] else strings


def _check_datetime_field(value: Any, name: str, rule: FieldRule, bad: _Bad, ctx: _Context) -> Any:
    parsed, error = _to_datetime(value)
    if error:
        bad(name, error)
        return _INVALID
    return parsed


def _check_url_field(value: Any, name: str, rule: FieldRule, bad: _Bad, ctx: _Context) -> Any:
    url = _check_url(value, name, bad)
    return _INVALID if url is None else url


def _check_bool(value: Any, name: str, rule: FieldRule, bad: _Bad, ctx: _Context) -> Any:
    if not isinstance(value, bool):
        bad(name, f"expected true or false, got {_kind_of(value)}")
        return _INVALID
    return value


_CHECKERS: dict[FieldKind, Callable[[Any, str, FieldRule, _Bad, _Context], Any]] = {
    FieldKind.ID: _check_id,
    FieldKind.KIND: _check_kind,
    FieldKind.ENUM: _check_enum,
    FieldKind.LOCALIZED: _check_localized_field,
    FieldKind.STRINGS: _check_strings_field,
    FieldKind.DATETIME: _check_datetime_field,
    FieldKind.URL: _check_url_field,
    FieldKind.BOOL: _check_bool,
}
# Problems written on one line are reported in this order of kinds.
_CHECK_ORDER = (
    FieldKind.ID,
    FieldKind.KIND,
    FieldKind.ENUM,
    FieldKind.LOCALIZED,
    FieldKind.STRINGS,
    FieldKind.DATETIME,
    FieldKind.URL,
    FieldKind.BOOL,
)
_DEFAULTS = {
    f.name: f.default for f in dataclass_fields(Incident) if f.default is not dataclass_missing
}
_KIND_FIELD = next(n for n, r in INCIDENT_FIELDS.items() if r.kind is FieldKind.KIND)
_EVERY_KIND = frozenset(IncidentKind)


def _check_localized(
    value: Any, name: str, bad: Callable[[str, str], None], languages: Collection[str]
) -> Localized | None:
    if value is None:
        return None
    if isinstance(value, str):
        if not value.strip():
            bad(name, "empty text")
            return None
        return Localized({ALL_LANGUAGES: value})
    if not isinstance(value, Mapping):
        bad(
            name,
            f"expected a text or a table of texts by language "
            f'(e.g. {{ en = "...", fr = "..." }}), got {_kind_of(value)}',
        )
        return None
    if not value:
        bad(name, "no text in any language")
        return None
    ok = True
    for language, text in value.items():
        sub = f"{name}.{language}"
        if not isinstance(text, str):
            bad(sub, f"expected a string, got {_kind_of(text)}")
            ok = False
        elif not text.strip():
            bad(sub, "empty text")
            ok = False
    localized = Localized({str(k): v for k, v in value.items()})
    for language in sorted(languages):
        if not localized.covers(language):
            bad(f"{name}.{language}", f"no {language!r} text, and a channel posts in {language!r}")
            ok = False
    return localized if ok else None


def _check_string_list(value: Any, name: str, bad: Callable[[str, str], None]) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        bad(name, f'expected a list of strings, got a string (write {name} = ["{value}"])')
        return ()
    if not isinstance(value, list | tuple):
        bad(name, f"expected a list of strings, got {_kind_of(value)}")
        return ()
    for k, item in enumerate(value, 1):
        if not isinstance(item, str):
            bad(name, f"expected a list of strings, but item {k} is {_kind_of(item)}")
            return ()
        if not item.strip():
            bad(name, f"item {k} is empty")
            return ()
    return tuple(value)


def _to_datetime(value: Any) -> tuple[datetime | None, str | None]:
    """An aware datetime from a TOML datetime or an ISO 8601 string; else an error text."""
    example = f"write it with its UTC offset, e.g. {_DATETIME_EXAMPLE}"
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            return None, f"not a datetime: {value!r} ({example})"
        value = parsed
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            return None, f"{value.isoformat()} has no UTC offset ({example})"
        return value, None
    if isinstance(value, date):
        return None, f"a date without a time ({example})"
    if isinstance(value, time):
        return None, f"a time without a date ({example})"
    return None, f"expected a datetime, got {_kind_of(value)} ({example})"


def _check_url(value: Any, name: str, bad: Callable[[str, str], None]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        bad(name, f"expected a URL string, got {_kind_of(value)}")
        return None
    try:
        parts = urlsplit(value.strip())
        ok = parts.scheme in ("http", "https") and bool(parts.netloc)
    except ValueError:
        ok = False
    if not ok:
        bad(name, f"{value!r} is not an http(s) URL (it must start with https:// or http://)")
        return None
    return value


# --------------------------------------------------------------------------------------
# Updating


def _check_change_keys(path_str: str, incident_id: str, changes: Mapping[str, Any]) -> None:
    problems = []
    for key in changes:
        if key not in INCIDENT_KEYS:
            message = _unknown_key_message(str(key), INCIDENT_KEYS)
        elif key == ID_FIELD:
            # Posts are threaded by id: a new id would start a new thread on every channel.
            message = "the id cannot be changed"
        else:
            continue
        problems.append(
            Problem(path_str, None, incident_id, str(key), f"change refused: {message}")
        )
    if problems:
        raise StateFileError(problems)


def _plain(value: Any, *, for_json: bool) -> Any:
    """A change value as data the file can hold."""
    if isinstance(value, Localized):
        values = dict(value.values)
        return values[ALL_LANGUAGES] if set(values) == {ALL_LANGUAGES} else values
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat() if for_json else value
    if isinstance(value, Mapping):
        return {str(k): _plain(v, for_json=for_json) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, for_json=for_json) for v in value]
    return value


def _unknown_incident(path_str: str, incident_id: str, known: list[str]) -> StateFileError:
    listed = ", ".join(repr(k) for k in known) if known else "none"
    message = f"no incident with this id in the file (ids found: {listed})"
    close = difflib.get_close_matches(incident_id, known, n=1)
    if close:
        message += f"; did you mean {close[0]!r}?"
    return StateFileError([Problem(path_str, None, incident_id, ID_FIELD, message)])


def _unwritable(
    path_str: str, incident_id: str, key: str, value: Any, exc: Exception
) -> StateFileError:
    return StateFileError(
        [
            Problem(
                path_str,
                None,
                incident_id,
                key,
                f"change refused: cannot write {type(value).__name__} value {value!r} ({exc})",
            )
        ]
    )


def _toml_value(value: Any) -> str:
    """TOML text for a value; tables inline, spaced the way people write them."""
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        items = []
        for k, v in value.items():
            key = k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k, ensure_ascii=False)
            items.append(f"{key} = {_toml_value(v)}")
        return "{ " + ", ".join(items) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return tomlkit.item(value).as_string()


def _apply_toml(text: str, path_str: str, incident_id: str, changes: Mapping[str, Any]) -> str:
    _parse_toml(text, path_str)  # syntax errors, reported as well as load_state does
    try:
        doc = tomlkit.parse(text)
    except Exception as exc:
        raise StateFileError(
            [Problem(path_str, None, None, None, f"cannot update this file: {exc}")]
        ) from None
    entries = doc.get("incidents")
    entries = list(entries) if isinstance(entries, list) else []
    index = next(
        (
            i
            for i, t in enumerate(entries)
            if isinstance(t, Mapping) and t.get(ID_FIELD) == incident_id
        ),
        None,
    )
    if index is None:
        ids = [str(t.get(ID_FIELD)) for t in entries if isinstance(t, Mapping)]
        raise _unknown_incident(path_str, incident_id, ids)
    table = entries[index]
    added: dict[str, Any] = {}
    for key, raw in changes.items():
        value = _plain(raw, for_json=False)
        existing = table.get(key)
        try:
            if value is None:
                if key in table:
                    del table[key]
            elif isinstance(value, Mapping) and isinstance(existing, Mapping):
                for language, text_value in value.items():
                    existing[language] = tomlkit.item(text_value)
            elif key in table:
                table[key] = tomlkit.parse(f"v = {_toml_value(value)}")["v"]
            else:
                _toml_value(value)  # fail now, not halfway through inserting
                added[key] = value
        except (TypeError, ValueError) as exc:
            raise _unwritable(path_str, incident_id, key, raw, exc) from None
    new_text = tomlkit.dumps(doc)
    if added:
        new_text = _insert_toml_keys(new_text, ("incidents", index), added)
    return new_text


def _insert_toml_keys(text: str, address: Address, added: Mapping[str, Any]) -> str:
    """Insert new keys right after the incident's last key.

    tomlkit would append them after the blank lines and comments that follow the table,
    i.e. visually inside the next incident.
    """
    lines = text.split("\n")
    smap = _toml_source_map(text)
    in_table = [n for n, table in smap.sections.items() if table == address]
    if not in_table:
        # An inline incident table: let tomlkit place them, formatting cannot be kept anyway.
        doc = tomlkit.parse(text)
        table = doc["incidents"][address[-1]]
        for key, value in added.items():
            table[key] = tomlkit.parse(f"v = {_toml_value(value)}")["v"]
        return tomlkit.dumps(doc)
    last = max(in_table)
    continuation = {n: line is None for n, line in _toml_statement_lines(lines)}
    # Skip over a multi-line value (string or array) of the last key.
    while continuation.get(last + 1):
        last += 1
    ending = "\r" if lines[last - 1].endswith("\r") else ""
    new_lines = [f"{key} = {_toml_value(value)}{ending}" for key, value in added.items()]
    return "\n".join(lines[:last] + new_lines + lines[last:])


def _apply_json(text: str, path_str: str, incident_id: str, changes: Mapping[str, Any]) -> str:
    data, _ = _parse_json(text, path_str)
    entries = data.get("incidents") if isinstance(data, dict) else None
    entries = entries if isinstance(entries, list) else []
    target = next(
        (e for e in entries if isinstance(e, dict) and e.get(ID_FIELD) == incident_id), None
    )
    if target is None:
        ids = [str(e.get(ID_FIELD)) for e in entries if isinstance(e, dict)]
        raise _unknown_incident(path_str, incident_id, ids)
    for key, raw in changes.items():
        value = _plain(raw, for_json=True)
        existing = target.get(key)
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(existing, dict):
            existing.update(value)
        else:
            target[key] = value
    try:
        new_text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    except (TypeError, ValueError) as exc:
        key = next(iter(changes), "")
        raise _unwritable(path_str, incident_id, key, changes.get(key), exc) from None
    if "\r\n" in text:
        new_text = new_text.replace("\n", "\r\n")
    return new_text


def _write_atomic(target: Path, path_str: str, data: bytes, *, expected: bytes) -> None:
    """Replace ``target`` with ``data`` unless someone changed it since we read ``expected``."""
    tmp: str | None = None
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        # Ops edit this file by hand: never overwrite an edit made while we were working.
        if target.read_bytes() != expected:
            raise StateFileError(
                [
                    Problem(
                        path_str,
                        None,
                        None,
                        None,
                        "the file changed while the update was prepared; nothing was "
                        "written, run the command again",
                    )
                ]
            )
        os.replace(tmp, target)
        tmp = None
    except OSError as exc:
        raise StateFileError(
            [Problem(path_str, None, None, None, f"cannot write the file: {exc}")]
        ) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    # Make the rename itself durable; not every platform lets a directory be opened.
    with contextlib.suppress(OSError):
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
