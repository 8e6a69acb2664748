"""The incident form, derived from the schema (``model.INCIDENT_FIELDS``): one input per
field, by its kind; per-language texts side by side for each language the channels speak.

Form values are read back into the same plain data a state-file entry holds, and validated
by the state file's own checks, so the console reports exactly what ``check`` would.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import MISSING, dataclass, fields
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from ...model import (
    ALL_LANGUAGES,
    INCIDENT_FIELDS,
    KIND_FIELD,
    FieldKind,
    Incident,
    IncidentKind,
    Localized,
    Names,
    opened,
)
from ...timeinput import HINT, parse_time


@dataclass(frozen=True)
class FormField:
    name: str
    kind: FieldKind
    choices: tuple[tuple[str, tuple[str, ...]], ...]  # (group label, words); one "" group
    required_for: frozenset[str]  # kinds of incident that must have it
    only_for: str | None = None  # the one kind that may have it
    final_only: bool = False  # only meaningful once resolved or completed
    hint: str = ""

    def note(self, kind: str) -> str:
        """What the label adds: required for this kind, or when the field applies."""
        if kind in self.required_for:
            return "required"
        if self.only_for and self.only_for != kind:
            return f"{self.only_for} only"
        return "once over" if self.final_only else ""

    @property
    def localized(self) -> bool:
        """Asked once per language, side by side (texts, and service or region names)."""
        return self.kind in (FieldKind.LOCALIZED, FieldKind.NAMES)

    @property
    def one_line(self) -> bool:
        return self.name == "title" or self.kind is FieldKind.NAMES

    @property
    def input(self) -> str:
        """How the page asks for it: text, textarea, select, localized."""
        if self.kind is FieldKind.LOCALIZED:
            return "localized"
        if self.kind in (FieldKind.ENUM, FieldKind.KIND, FieldKind.BOOL):
            return "select"
        return "text"


def form_fields() -> list[FormField]:
    result = []
    for name, rule in INCIDENT_FIELDS.items():
        choices: tuple[tuple[str, tuple[str, ...]], ...] = ()
        if rule.kind is FieldKind.KIND:
            choices = (("", tuple(k.value for k in IncidentKind)),)
        elif rule.kind is FieldKind.BOOL:
            choices = (("", ("", "true", "false")),)
        elif isinstance(rule.choices, Mapping):
            choices = tuple((kind.value, words) for kind, words in rule.choices.items())
        elif rule.choices:
            choices = (("", rule.choices),)
        hint = {
            FieldKind.DATETIME: HINT,
            FieldKind.STRINGS: "comma-separated",
            FieldKind.NAMES: "comma-separated",
            FieldKind.URL: "https://…",
        }.get(rule.kind, "")
        result.append(
            FormField(
                name,
                rule.kind,
                choices,
                frozenset(k.value for k in rule.required_for),
                rule.only_for.value if rule.only_for else None,
                rule.final_only,
                hint,
            )
        )
    return result


FIELDS = form_fields()


def form_key(name: str, language: str | None = None) -> str:
    return f"{name}-{language}" if language else name


def values_of(
    incident: Incident | None, languages: Collection[str], tz: ZoneInfo
) -> dict[str, str]:
    """The form's text for each input, from an incident (or empty)."""
    return _texts(lambda name: getattr(incident, name, None), languages, tz)


def new_values(
    kind: IncidentKind, now: datetime, languages: Collection[str], tz: ZoneInfo
) -> dict[str, str]:
    """The form of a newly opened incident of ``kind``: each field's declared default, then
    what a new incident holds unless told otherwise (``model.opened``, as ``draft --new``)."""
    declared = {f.name: f.default for f in fields(Incident) if f.default is not MISSING}
    return _texts(opened({**declared, KIND_FIELD: kind}, now).get, languages, tz)


def _texts(
    value_of: Callable[[str], Any], languages: Collection[str], tz: ZoneInfo
) -> dict[str, str]:
    values: dict[str, str] = {}
    for f in FIELDS:
        value = value_of(f.name)
        if f.kind is FieldKind.NAMES:
            for language in languages:
                names = value.get(language) if isinstance(value, Names) else ()
                values[form_key(f.name, language)] = ", ".join(names)
        elif f.localized:
            for language in languages:
                text = value.get(language) if isinstance(value, Localized) else None
                values[form_key(f.name, language)] = text or ""
        elif value is None or value == ():
            values[f.name] = ""
        elif f.kind is FieldKind.DATETIME:
            # Seconds only when the file has them: publishing another field must not
            # rewrite this time by rounding it.
            exact = value.second or value.microsecond
            values[f.name] = value.astimezone(tz).isoformat(
                timespec="seconds" if exact else "minutes"
            )
        elif f.kind is FieldKind.STRINGS:
            values[f.name] = ", ".join(value)
        elif f.kind is FieldKind.BOOL:
            values[f.name] = "true" if value else "false"
        else:
            values[f.name] = str(value)
    return values


def read_form(
    form: Mapping[str, str], languages: Collection[str], tz: ZoneInfo, now: datetime
) -> tuple[dict[str, Any], dict[str, str]]:
    """The incident data the form describes (as a state-file entry), and the problems
    found before validation (times that cannot be read), by field."""
    data: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for f in FIELDS:
        if f.kind is FieldKind.NAMES:
            lists = {
                language: _comma_list(form.get(form_key(f.name, language), ""))
                for language in sorted(languages)
            }
            named = {language: names for language, names in lists.items() if names}
            if named and len({tuple(n) for n in lists.values()}) == 1:
                data[f.name] = next(iter(named.values()))  # the same names in every language
            elif named:
                data[f.name] = named
            continue
        if f.localized:
            texts = {
                language: form.get(form_key(f.name, language), "").strip()
                for language in sorted(languages)
            }
            given = {language: text for language, text in texts.items() if text}
            if given:
                data[f.name] = given
            continue
        raw = form.get(f.name, "").strip()
        if not raw:
            continue
        if f.kind is FieldKind.DATETIME:
            try:
                data[f.name] = parse_time(raw, now, tz, future=INCIDENT_FIELDS[f.name].to_come)
            except ValueError as exc:
                errors[f.name] = str(exc)
        elif f.kind is FieldKind.STRINGS:
            data[f.name] = _comma_list(raw)
        elif f.kind is FieldKind.BOOL:
            data[f.name] = raw == "true"
        else:
            data[f.name] = raw
    return data, errors


def changes_between(current: Incident, new: Incident, data: Mapping[str, Any]) -> dict[str, Any]:
    """What to write so the file holds ``new``: changed fields only (``None`` removes)."""
    changes: dict[str, Any] = {}
    for f in FIELDS:
        if f.kind is FieldKind.ID:
            continue
        before, after = getattr(current, f.name), getattr(new, f.name)
        if isinstance(before, Names) and isinstance(after, Names):
            if before.to_json() == after.to_json():
                continue
        elif f.localized and isinstance(before, Localized) and isinstance(after, Localized):
            languages = after.languages() | (before.languages() - {ALL_LANGUAGES})
            if all(before.get(lang) == after.get(lang) for lang in languages):
                continue
        elif before == after:
            continue
        changes[f.name] = data.get(f.name)
    return changes


def edited(
    form: Mapping[str, str], shown: Mapping[str, str], languages: Collection[str]
) -> set[str]:
    """The fields whose inputs the person changed from ``shown`` (the form for the file as it
    is). Only these are written: a field nobody touched is never rewritten from its form
    text, which cannot always say it as the file does (a name with a comma in a list)."""
    changed = set()
    for f in FIELDS:
        keys = [form_key(f.name, lang) for lang in languages] if f.localized else [f.name]
        if any(not _same(form.get(k, ""), shown.get(k, "")) for k in keys):
            changed.add(f.name)
    return changed


def form_labels(languages: Collection[str]) -> dict[str, str]:
    """Each input's key and how to name it to a person: ``message (fr)``, ``status``."""
    labels: dict[str, str] = {}
    for f in FIELDS:
        if f.localized:
            for language in languages:
                labels[form_key(f.name, language)] = f"{f.name} ({language})"
        else:
            labels[f.name] = f.name
    return labels


def _same(a: str, b: str) -> bool:
    # Browsers send a textarea's line breaks as CRLF.
    return a.replace("\r\n", "\n").strip() == b.replace("\r\n", "\n").strip()


def rebase(
    form: Mapping[str, str], before: Mapping[str, str], now: Mapping[str, str]
) -> tuple[dict[str, str], list[str]]:
    """A form opened on ``before`` moved onto ``now`` (someone saved in between): the inputs
    the person left alone take the saved value, their own edits stay. Also the keys both
    changed, differently."""
    merged = dict(form)
    both = []
    for key, theirs in now.items():
        base, mine = before.get(key, ""), form.get(key, "")
        if _same(mine, base):
            merged[key] = theirs
        elif not _same(theirs, base) and not _same(mine, theirs):
            both.append(key)
    return merged, both


def describe(changes: Mapping[str, Any], tz: ZoneInfo) -> list[tuple[str, str]]:
    """What was saved, for people: one line per field and language, times in ``tz``."""

    def text(value: Any) -> str:
        if isinstance(value, datetime):
            return value.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, list | tuple):
            return ", ".join(str(v) for v in value)
        return str(value)

    lines: list[tuple[str, str]] = []
    for name, value in changes.items():
        if value is None:
            lines.append((name, "(removed)"))
        elif isinstance(value, Mapping):
            lines += [(f"{name} ({lang})", text(v)) for lang, v in value.items()]
        else:
            lines.append((name, text(value)))
    return lines


def _comma_list(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]
