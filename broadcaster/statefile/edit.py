"""Updating one incident in the state file: formatting and comments kept, written atomically."""

from __future__ import annotations

import contextlib
import difflib
import enum
import fcntl
import hashlib
import json
import os
import re
import stat
import tempfile
from collections.abc import Collection, Mapping, MutableMapping
from datetime import datetime
from pathlib import Path
from typing import Any

import tomlkit

from ..model import ALL_LANGUAGES, ID_FIELD, Localized
from .sourcemap import Address, toml_source_map, toml_statement_lines
from .syntax import Problem, StateFileError, format_of, no_surprises, parse_json, parse_toml, read
from .validate import INCIDENT_KEYS, state_from_text, unknown_key_message


def apply_changes(
    path: Path,
    incident_id: str,
    changes: Mapping[str, Any],
    *,
    languages: Collection[str] = (),
    expected_sha256: str | None = None,
) -> None:
    """Update fields of one incident in place, keeping the file's formatting and comments.

    A value of ``None`` removes the field. A localized value given as a mapping updates only
    those languages when the field already is a table; otherwise the value replaces the
    field as given. The result is validated (with ``languages``) before anything is written,
    and written atomically, so a refused change leaves the file untouched. With
    ``expected_sha256`` (the file as the person saw it), a file changed since is refused.
    """
    path_str = str(path)
    with no_surprises(path_str):
        fmt = format_of(path_str)
        # Write through a symlink rather than replacing it with a regular file.
        target = Path(os.path.realpath(path))
        text, raw = read(target, path_str)
        _check_unchanged(path_str, raw, expected_sha256)
        _check_change_keys(path_str, incident_id, changes)
        if fmt == "toml":
            new_text = _apply_toml(text, path_str, incident_id, changes)
        else:
            new_text = _apply_json(text, path_str, incident_id, changes)
        _check_and_write(target, path_str, fmt, languages, new_text, raw)


def append_incident(
    path: Path,
    data: Mapping[str, Any],
    *,
    languages: Collection[str] = (),
    expected_sha256: str | None = None,
) -> None:
    """Add a new incident at the end of the file, the rest of it kept as written.

    Validated with the whole file (a duplicate id is refused) before anything is written,
    and written atomically, like :func:`apply_changes`.
    """
    path_str = str(path)
    incident_id = str(data.get(ID_FIELD, ""))
    with no_surprises(path_str):
        fmt = format_of(path_str)
        target = Path(os.path.realpath(path))
        text, raw = read(target, path_str)
        _check_unchanged(path_str, raw, expected_sha256)
        _check_change_keys(path_str, incident_id, {k: v for k, v in data.items() if k != ID_FIELD})
        if fmt == "toml":
            parse_toml(text, path_str)
            lines = [f"{key} = {_toml_value(_plain(v, for_json=False))}" for key, v in data.items()]
            newline = "\r\n" if "\r\n" in text else "\n"
            body = text.rstrip("\r\n")
            new_text = (
                (body + newline * 2 if body else "")
                + newline.join(["[[incidents]]", *lines])
                + newline
            )
        else:
            parsed, _ = parse_json(text, path_str) if text.strip() else ({"incidents": []}, None)
            if not isinstance(parsed, dict) or not isinstance(parsed.get("incidents"), list):
                parsed = {"incidents": []} if not text.strip() else parsed
            parsed["incidents"].append({str(k): _plain(v, for_json=True) for k, v in data.items()})
            new_text = json.dumps(parsed, indent=2, ensure_ascii=False) + "\n"
            if "\r\n" in text:
                new_text = new_text.replace("\n", "\r\n")
        _check_and_write(target, path_str, fmt, languages, new_text, raw)


CHANGED_MESSAGE = "the file changed while the update was prepared; nothing was written"


def _check_and_write(
    target: Path,
    path_str: str,
    fmt: str,
    languages: Collection[str],
    new_text: str,
    raw: bytes,
) -> None:
    """Validate the whole new file as the daemon will read it, then replace the file
    atomically (keeping a byte-order mark), unless it changed since ``raw`` was read."""
    try:
        state_from_text(new_text, path_str, fmt, languages)
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


def _check_unchanged(path_str: str, raw: bytes, expected_sha256: str | None) -> None:
    if expected_sha256 is not None and hashlib.sha256(raw).hexdigest() != expected_sha256:
        raise StateFileError([Problem(path_str, None, None, None, CHANGED_MESSAGE)])


# --------------------------------------------------------------------------------------
# Updating


def _check_change_keys(path_str: str, incident_id: str, changes: Mapping[str, Any]) -> None:
    problems = []
    for key in changes:
        if key not in INCIDENT_KEYS:
            message = unknown_key_message(str(key), INCIDENT_KEYS)
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
    text: str = tomlkit.item(value).as_string()
    return text


def _apply_toml(text: str, path_str: str, incident_id: str, changes: Mapping[str, Any]) -> str:
    parse_toml(text, path_str)  # syntax errors, reported as well as load_state does
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
            elif isinstance(value, Mapping) and isinstance(existing, MutableMapping):
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
    smap = toml_source_map(text)
    in_table = [n for n, table in smap.sections.items() if table == address]
    if not in_table:
        # An inline incident table: let tomlkit place them, formatting cannot be kept anyway.
        doc = tomlkit.parse(text)
        table = doc["incidents"][address[-1]]
        for key, value in added.items():
            table[key] = tomlkit.parse(f"v = {_toml_value(value)}")["v"]
        return tomlkit.dumps(doc)
    last = max(in_table)
    continuation = {n: line is None for n, line in toml_statement_lines(lines)}
    # Skip over a multi-line value (string or array) of the last key.
    while continuation.get(last + 1):
        last += 1
    ending = "\r" if lines[last - 1].endswith("\r") else ""
    new_lines = [f"{key} = {_toml_value(value)}{ending}" for key, value in added.items()]
    return "\n".join(lines[:last] + new_lines + lines[last:])


def _apply_json(text: str, path_str: str, incident_id: str, changes: Mapping[str, Any]) -> str:
    data, _ = parse_json(text, path_str)
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
        # The console and `draft --write` take a lock around the check and the replace, so
        # two of them cannot both pass the check in the gap before the other's replace.
        # The lock is on the directory itself: no lock file left beside the state file.
        held = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(held, fcntl.LOCK_EX)
            if target.read_bytes() != expected:
                raise StateFileError(
                    [
                        Problem(
                            path_str,
                            None,
                            None,
                            None,
                            f"{CHANGED_MESSAGE}, run the command again",
                        )
                    ]
                )
            os.replace(tmp, target)
            tmp = None
        finally:
            os.close(held)  # releases the lock
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
