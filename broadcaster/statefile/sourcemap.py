"""Where each key of a TOML or JSON document is written: the line locator for problems.

Neither ``tomllib`` nor ``json`` reports positions for values, so these small scanners map
every key (an :data:`Address`) back to its line. They are tolerant of broken input, since
they also locate syntax errors. The config file uses the same locator.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from ..model import ID_FIELD

# A path from the document root to a value: ("incidents", 0, "title", "fr").
Address = tuple[str | int, ...]


# --------------------------------------------------------------------------------------
# Source maps: where each key of the document is written


@dataclass
class SourceMap:
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


def describe_address(address: Address, ids: Mapping[Address, str]) -> tuple[str | None, str | None]:
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
        decoded: str = json.loads(f'"{text}"')
    except ValueError:
        return text
    return decoded


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


def toml_statement_lines(lines: list[str]) -> Iterator[tuple[int, str | None]]:
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


def toml_source_map(text: str) -> SourceMap:
    smap = SourceMap()
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

    for n, line in toml_statement_lines(text.split("\n")):
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


def json_source_map(text: str) -> tuple[SourceMap, Address]:
    """Map keys to lines; tolerant of truncated input, it also returns where it stopped."""
    smap = SourceMap()
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


class LazySourceMap:
    """The source map of a file that parsed, built only when a problem must be located.

    Mapping every key costs as much as parsing; a valid file needs only the line where each
    incident starts (its ``origin``), which a cheap scan finds: ``origins`` holds them. The
    scan is exact for a file that validates (the only case where origins are used); problems
    are always located with the full map. ``duplicates_possible`` is False when the parser
    saw no key written twice.
    """

    def __init__(
        self,
        build: Callable[[], SourceMap],
        origins: Mapping[Address, int] | None = None,
        *,
        duplicates_possible: bool = True,
    ) -> None:
        self._build = build
        self._full: SourceMap | None = None
        self.origins = dict(origins or {})
        self.duplicates_possible = duplicates_possible

    def full(self) -> SourceMap:
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


def toml_header_lines(text: str) -> list[int]:
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


def json_element_lines(text: str, key: str) -> list[int] | None:
    """Line where each item of the top-level array ``key`` starts, in valid JSON text.

    None when the document is not shaped so; the full map then finds the lines.
    """
    # The decoder's own scanners: they return where each value ends, which loads() hides.
    scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
    scanstring = json.decoder.scanstring  # type: ignore[attr-defined]

    def space(text: str, pos: int = 0) -> re.Match[str]:
        m = _JSON_SPACE.match(text, pos)
        assert m is not None  # the pattern matches the empty string
        return m

    starts: list[int] | None = None
    try:
        pos = space(text).end()
        if text[pos] != "{":
            return None
        pos = space(text, pos + 1).end()
        while text[pos] == '"':
            name, pos = scanstring(text, pos + 1)
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
