"""Validating a parsed state file against the incident schema declared in ``model``.

One checker per field kind, driven by the declarations (``model.INCIDENT_FIELDS``); every
problem is collected, located through the source map, and reported at once.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import MISSING as dataclass_missing
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from datetime import UTC, date, datetime, time
from typing import Any
from urllib.parse import urlsplit

from ..model import (
    ALL_LANGUAGES,
    ID_FIELD,
    INCIDENT_FIELDS,
    FieldKind,
    FieldRule,
    Incident,
    IncidentKind,
    Localized,
    Names,
)
from .sourcemap import Address, LazySourceMap, describe_address
from .syntax import DATETIME_EXAMPLE, Problem, StateFileError, parse

INCIDENT_KEYS = tuple(INCIDENT_FIELDS)
_STATE_TOP_KEYS = ("incidents",)
_TIMELINE_TOP_KEYS = ("step",)
_STEP_KEYS = ("at", "incidents")
_ID_RE = re.compile(r"[a-z0-9._-]+")

# What the planner, renderer and platforms can take, checked at every door (accepted means
# postable): text a platform can receive as UTF-8, without NUL or other control characters
# but line breaks and tabs; bounded sizes; datetimes a clock can reach and date arithmetic
# (cadence, promises) cannot overflow.
MAX_ID_CHARS = 128
MAX_TEXT_CHARS = 5000
MAX_URL_CHARS = 2048
MAX_LIST_ITEMS = 50
MIN_YEAR = 1970
MAX_YEAR = 2200
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


# --------------------------------------------------------------------------------------
# Validation


class Report:
    """Collects the problems of one file, locating each through the source map."""

    def __init__(
        self, path: str, smap: LazySourceMap | None, *, fallback_line: int | None = None
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


def unknown_key_message(key: str, known: Collection[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    if close:
        return f"unknown key {key!r} (did you mean {close[0]!r}?)"
    return f"unknown key {key!r} (known keys: {', '.join(known)})"


def _check_top_level(
    data: Any, report: Report, known: tuple[str, ...], list_key: str, header: str
) -> list[Any]:
    """The list of entries under ``list_key``; problems for anything else at the top."""
    if not isinstance(data, Mapping):
        report.add((), f"expected a table (JSON object) at the top, got {_kind_of(data)}")
        return []
    for key in data:
        if key not in known:
            message = unknown_key_message(key, known)
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


# What an incident's posts need beyond the schema (``fits``: the thread cap): the
# (field, message) of each problem, none when it can be posted.
Check = Callable[[Incident], Iterable[tuple[str, str]]]


def state_from_text(
    text: str,
    path_str: str,
    fmt: str,
    languages: Collection[str],
    *,
    check: Check | None = None,
) -> list[Incident]:
    data, smap = parse(text, path_str, fmt)
    report = Report(path_str, smap)
    _report_duplicate_keys(smap, report)
    entries = _check_top_level(data, report, _STATE_TOP_KEYS, "incidents", "[[incidents]]")
    incidents = _check_incidents(entries, ("incidents",), report, languages)
    if check is not None and not report.problems:
        for i, incident in enumerate(incidents):
            for field, message in check(incident):
                address = ("incidents", i, field)
                report.add(address, message, incident_id=incident.id, field=field)
    report.raise_if_any()
    return incidents


def timeline_from_text(
    text: str, path_str: str, fmt: str, languages: Collection[str]
) -> list[tuple[datetime, list[Incident]]]:
    data, smap = parse(text, path_str, fmt)
    report = Report(path_str, smap)
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
                    (*base, key), f"{label}: {unknown_key_message(key, _STEP_KEYS)}", field=key
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


def _report_duplicate_keys(smap: LazySourceMap, report: Report) -> None:
    # Only JSON gets here with duplicates (TOML refuses them as syntax errors); json keeps
    # the last value silently, which would hide an ops edit.
    if not smap.duplicates_possible:
        return
    full = smap.full()
    for address, line, first in full.duplicates:
        incident_id, field_name = describe_address(address, full.ids)
        report.add(
            address,
            f"key {address[-1]!r} is written twice (first at line {first}); only the last "
            "one would count",
            incident_id=incident_id,
            field=field_name,
            line=line,
        )


def _check_incidents(
    entries: list[Any], base: Address, report: Report, languages: Collection[str]
) -> list[Incident]:
    incidents: list[Incident] = []
    # id -> address of its first id key; lines are looked up only to report a problem.
    first_seen: dict[str, Address] = {}
    for i, entry in enumerate(entries):
        address = (*base, i)
        line = report.origin_line(address)
        origin = f"{report.path}:{line}" if line is not None else report.path
        incident = check_incident(entry, report, address, origin, languages, number=i + 1)
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


def check_incident(
    data: Any,
    report: Report,
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
            bad(str(key), unknown_key_message(str(key), INCIDENT_KEYS))

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
                if rule.always_required:
                    bad(name, _missing(name, rule, label, kind))
                continue
            check = _CHECKERS[field_kind]
            values[name] = check(value, name, rule, bad, _Context(kind, languages))
            if field_kind is FieldKind.KIND:
                kind = values[name] if values[name] is not _INVALID else None

    # Rules across fields: what a kind requires or forbids, defaults, order in time.
    if kind is not None:
        for name, rule in INCIDENT_FIELDS.items():
            if rule.always_required:
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
        message += f", e.g. {name} = {DATETIME_EXAMPLE}"
    return message


def _choices(rule: FieldRule, kind: IncidentKind | None) -> tuple[str, ...]:
    if isinstance(rule.choices, Mapping):
        return rule.choices[kind] if kind is not None else ()
    return rule.choices


def _as_written(value: Any) -> Any:
    """A current field value as a file would hold it, for the checks (None if not set)."""
    if isinstance(value, Localized):
        return dict(value.values)
    if isinstance(value, Names) and value:
        return value.to_json()
    if value == ():
        return None
    return value


def _check_id(value: Any, name: str, rule: FieldRule, bad: _Bad, ctx: _Context) -> Any:
    if not isinstance(value, str):
        bad(name, f"expected a string, got {_kind_of(value)}")
        return _INVALID
    if len(value) > MAX_ID_CHARS:
        bad(name, f"id longer than {MAX_ID_CHARS} characters")
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


def _check_localized(value: Any, name: str, rule: FieldRule, bad: _Bad, ctx: _Context) -> Any:
    if isinstance(value, str):
        problem = _text_problem(value)
        if problem:
            bad(name, problem)
            return _INVALID
        return Localized({ALL_LANGUAGES: value})
    if not isinstance(value, Mapping):
        bad(
            name,
            f"expected a text or a table of texts by language "
            f'(e.g. {{ en = "...", fr = "..." }}), got {_kind_of(value)}',
        )
        return _INVALID
    if not value:
        bad(name, "no text in any language")
        return _INVALID
    ok = True
    for language, text in value.items():
        sub = f"{name}.{language}"
        if not isinstance(text, str):
            bad(sub, f"expected a string, got {_kind_of(text)}")
            ok = False
        elif problem := _text_problem(text):
            bad(sub, problem)
            ok = False
    localized = Localized({str(k): v for k, v in value.items()})
    for language in sorted(ctx.languages):
        if not localized.covers(language):
            bad(f"{name}.{language}", f"no {language!r} text, and a channel posts in {language!r}")
            ok = False
    return localized if ok else _INVALID


def _check_strings(value: Any, name: str, rule: FieldRule, bad: _Bad, ctx: _Context) -> Any:
    if isinstance(value, str):
        bad(name, f'expected a list of strings, got a string (write {name} = ["{value}"])')
        return _INVALID
    if not isinstance(value, list | tuple):
        bad(name, f"expected a list of strings, got {_kind_of(value)}")
        return _INVALID
    if len(value) > MAX_LIST_ITEMS:
        bad(name, f"more than {MAX_LIST_ITEMS} items")
        return _INVALID
    for k, item in enumerate(value, 1):
        if not isinstance(item, str):
            bad(name, f"expected a list of strings, but item {k} is {_kind_of(item)}")
            return _INVALID
        problem = _text_problem(item)
        if problem:
            bad(name, f"item {k}: {problem}")
            return _INVALID
    return tuple(value)


def _check_names(value: Any, name: str, rule: FieldRule, bad: _Bad, ctx: _Context) -> Any:
    """A list of names for every language, or a table of lists by language."""
    if not isinstance(value, Mapping):
        names = _check_strings(value, name, rule, bad, ctx)
        return names if names is _INVALID else Names(names)
    if not value:
        bad(name, "no names in any language")
        return _INVALID
    table: dict[str, tuple[str, ...]] = {}
    for language, names in value.items():
        checked = _check_strings(names, f"{name}.{language}", rule, bad, ctx)
        if checked is _INVALID:
            return _INVALID
        table[str(language)] = checked
    result = Names(table)
    ok = True
    for language in sorted(ctx.languages):
        if not result.covers(language):
            bad(
                f"{name}.{language}",
                f"no {language!r} names, and a channel posts in {language!r}",
            )
            ok = False
    return result if ok else _INVALID


def _check_datetime(value: Any, name: str, rule: FieldRule, bad: _Bad, ctx: _Context) -> Any:
    parsed, error = _to_datetime(value)
    if error:
        bad(name, error)
        return _INVALID
    return parsed


def _check_url(value: Any, name: str, rule: FieldRule, bad: _Bad, ctx: _Context) -> Any:
    if not isinstance(value, str):
        bad(name, f"expected a URL string, got {_kind_of(value)}")
        return _INVALID
    problem = _text_problem(value, MAX_URL_CHARS)
    if problem or any(c.isspace() for c in value.strip()):
        bad(name, problem or "a URL cannot contain spaces")
        return _INVALID
    try:
        parts = urlsplit(value.strip())
        ok = parts.scheme in ("http", "https") and bool(parts.netloc)
    except ValueError:
        ok = False
    if not ok:
        bad(name, f"{value!r} is not an http(s) URL (it must start with https:// or http://)")
        return _INVALID
    return value


def _check_bool(value: Any, name: str, rule: FieldRule, bad: _Bad, ctx: _Context) -> Any:
    if not isinstance(value, bool):
        bad(name, f"expected true or false, got {_kind_of(value)}")
        return _INVALID
    return value


_CHECKERS: dict[FieldKind, Callable[[Any, str, FieldRule, _Bad, _Context], Any]] = {
    FieldKind.ID: _check_id,
    FieldKind.KIND: _check_kind,
    FieldKind.ENUM: _check_enum,
    FieldKind.LOCALIZED: _check_localized,
    FieldKind.STRINGS: _check_strings,
    FieldKind.NAMES: _check_names,
    FieldKind.DATETIME: _check_datetime,
    FieldKind.URL: _check_url,
    FieldKind.BOOL: _check_bool,
}
# Problems written on one line are reported in this order of kinds.
_CHECK_ORDER = (
    FieldKind.ID,
    FieldKind.KIND,
    FieldKind.ENUM,
    FieldKind.LOCALIZED,
    FieldKind.STRINGS,
    FieldKind.NAMES,
    FieldKind.DATETIME,
    FieldKind.URL,
    FieldKind.BOOL,
)
_DEFAULTS = {
    f.name: f.default for f in dataclass_fields(Incident) if f.default is not dataclass_missing
}
_KIND_FIELD = next(n for n, r in INCIDENT_FIELDS.items() if r.kind is FieldKind.KIND)


def _text_problem(text: str, limit: int = MAX_TEXT_CHARS) -> str | None:
    """Why ``text`` cannot be posted, or None."""
    if not text.strip():
        return "empty text"
    if len(text) > limit:
        return f"longer than {limit} characters ({len(text)})"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return (
            f"invalid character at position {e.start + 1} (a lone surrogate such as "
            "\\ud800, what cutting an emoji in half leaves): not valid Unicode"
        )
    control = _CONTROL_RE.search(text)
    if control:
        return (
            f"control character {control.group()!r} at position {control.start() + 1}: "
            "only line breaks and tabs are allowed"
        )
    return None


def _to_datetime(value: Any) -> tuple[datetime | None, str | None]:
    """An aware datetime from a TOML datetime or an ISO 8601 string; else an error text."""
    example = f"write it with its UTC offset, e.g. {DATETIME_EXAMPLE}"
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            return None, f"not a datetime: {value!r} ({example})"
        value = parsed
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            return None, f"{value.isoformat()} has no UTC offset ({example})"
        try:
            year: int | None = value.astimezone(UTC).year
        except (OverflowError, ValueError):
            year = None
        if year is None or not MIN_YEAR <= year <= MAX_YEAR:
            return None, (
                f"{value.isoformat()} is out of range: years {MIN_YEAR} to {MAX_YEAR} only"
            )
        return value, None
    if isinstance(value, date):
        return None, f"a date without a time ({example})"
    if isinstance(value, time):
        return None, f"a time without a date ({example})"
    return None, f"expected a datetime, got {_kind_of(value)} ({example})"
