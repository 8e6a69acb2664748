"""What the console does, without HTTP: read the state file and the store, preview, publish.

Publishing goes through the state-file editor ``draft --write`` uses (atomic replace,
comments kept). A form carries the hash of the file it was opened on; a publish over a
newer file is refused with what changed, so two editors never overwrite each other.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ...advice import budget_advice, incident_advice
from ...app import fit_check, open_store, store_path
from ...clock import utcnow
from ...config import Config
from ...model import ID_FIELD, INCIDENT_FIELDS, Incident, PostState
from ...statefile import (
    Check,
    StateFileError,
    append_incident,
    apply_changes,
    parse_incident,
)
from ...statefile.edit import CHANGED_MESSAGE
from ...statefile.syntax import format_of, no_surprises
from ...statefile.validate import state_from_text
from .forms import changes_between, edited, form_labels, read_form, rebase, values_of

AUDIT_FILE = "console-audit.jsonl"


@dataclass(frozen=True)
class StateView:
    """The state file as read once: its hash and its incidents (or why they cannot be read)."""

    hash: str
    incidents: list[Incident]
    error: str | None = None

    def incident(self, incident_id: str) -> Incident | None:
        return next((i for i in self.incidents if i.id == incident_id), None)


@dataclass(frozen=True)
class Posted:
    channel: str
    kind: str
    part: int
    parts: int
    state: str
    text: str
    url: str | None
    at: datetime | None


@dataclass
class Outcome:
    """A form's result: field errors, a conflict, or what was saved."""

    errors: dict[str, list[str]] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)
    conflict: list[str] | None = None  # what someone else changed, one line each
    # On a conflict: the saved file's values with the person's own edits on top, the file
    # hash they come from (publish again against it), and what both changed.
    rebased: dict[str, str] | None = None
    rebased_hash: str | None = None
    both_changed: list[str] = field(default_factory=list)
    saved: dict[str, Any] | None = None
    hash_after: str | None = None

    @property
    def ok(self) -> bool:
        return not self.errors and not self.general and self.conflict is None


def _hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Workspace:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.languages = sorted(config.languages())
        self._lock = threading.Lock()  # one publish at a time in this process
        self._seen: OrderedDict[str, list[Incident]] = OrderedDict()  # by hash, for conflicts
        self._seen_lock = threading.Lock()  # previews run on several threads
        self._fit_check: Check | None = None

    # -- reading ---------------------------------------------------------------------------

    def state(self) -> StateView:
        path = self.config.state_file
        try:
            raw = path.read_bytes()
        except OSError as exc:
            return StateView("", [], f"{path}: cannot read: {exc.strerror}")
        digest = _hash(raw)
        with self._seen_lock:
            known = self._seen.get(digest)
        if known is not None:
            return StateView(digest, known)
        try:
            # The very bytes hashed: the hash a form carries names the incidents it showed.
            with no_surprises(str(path)):
                text = raw.decode("utf-8-sig")
                incidents = state_from_text(text, str(path), format_of(str(path)), self.languages)
        except (StateFileError, UnicodeDecodeError) as exc:
            return StateView(digest, [], str(exc))
        with self._seen_lock:
            self._seen[digest] = incidents
            while len(self._seen) > 64:
                self._seen.popitem(last=False)
        return StateView(digest, incidents)

    def store_summary(self, now: datetime) -> dict[str, dict[str, Any]]:
        """Per incident: last post time, next update due, links (empty without a store)."""
        from ...status import read_status

        path = store_path(self.config, dry_run=False)
        if not path.exists():
            return {}
        try:
            store = open_store(self.config, dry_run=False)
        except Exception:  # a store being created or locked: show the list without it
            return {}
        try:
            status = read_status(store, self.config.channels, now, detailed=True)
            posts = store.posts(states=(PostState.SENT,))
        finally:
            store.close()
        summary: dict[str, dict[str, Any]] = {}
        for inc in status.incidents:
            dues = [t.next_due_at for t in inc.threads.values() if t.next_due_at]
            summary[inc.snapshot.incident.id] = {
                "next_due": min(dues) if dues else None,
                "last_post": None,
                "links": {c: t.link for c, t in inc.threads.items() if t.link},
            }
        for post in posts:
            entry = summary.setdefault(
                post.incident_id, {"next_due": None, "last_post": None, "links": {}}
            )
            if post.sent_at and (entry["last_post"] is None or post.sent_at > entry["last_post"]):
                entry["last_post"] = post.sent_at
        return summary

    def posted(self, incident_id: str) -> list[Posted]:
        path = store_path(self.config, dry_run=False)
        if not path.exists():
            return []
        store = open_store(self.config, dry_run=False)
        try:
            posts = [p for p in store.posts() if p.incident_id == incident_id]
        finally:
            store.close()
        return [
            Posted(
                p.channel,
                p.kind.value,
                p.part,
                p.parts,
                p.state.value,
                p.text,
                p.remote_url,
                p.sent_at or p.planned_at,
            )
            for p in posts
        ]

    # -- validating and previewing ---------------------------------------------------------

    def validate(
        self, form: Mapping[str, str], incident_id: str | None, now: datetime
    ) -> tuple[Incident | None, dict[str, Any], dict[str, list[str]], StateView]:
        """The incident the form describes (None if invalid), its data, errors by field."""
        view = self.state()
        data, early = read_form(form, self.languages, self.config.timezone, now)
        errors: dict[str, list[str]] = {name: [msg] for name, msg in early.items()}
        if incident_id is not None:
            data[ID_FIELD] = incident_id
        if view.error:
            errors.setdefault("", []).append(view.error)
            return None, data, errors, view
        new_id = str(data.get(ID_FIELD, ""))
        if incident_id is None and view.incident(new_id) is not None:
            errors.setdefault(ID_FIELD, []).append(f"duplicate id {new_id!r}: already used")
        try:
            incident = parse_incident(
                {k: v for k, v in data.items() if k not in errors},
                origin=f"{self.config.state_file}",
                languages=self.languages,
            )
        except StateFileError as exc:
            for p in exc.problems:
                name = (p.field or "").split(".")[0]
                errors.setdefault(name if name in INCIDENT_FIELDS else "", []).append(p.message)
            return None, data, errors, view
        if not errors:
            # Posts longer than a channel's thread cap: refused before saving, as every
            # door refuses them.
            for name, message in self._fits()(incident):
                errors.setdefault(name, []).append(message)
        return (None if errors else incident), data, errors, view

    def _fits(self) -> Check:
        with self._seen_lock:
            if self._fit_check is None:
                self._fit_check = fit_check(self.config)
            return self._fit_check

    def preview(self, form: Mapping[str, str], incident_id: str | None) -> dict[str, Any]:
        """What every channel would post now if the form were published (JSON for the page)."""
        from ...rehearsal import preview, without_advice

        now = utcnow()
        incident, _, errors, view = self.validate(form, incident_id, now)
        result: dict[str, Any] = {
            "errors": errors,
            # What ``check`` warns about: the config's budgets, then this incident.
            "warnings": [str(a) for a in budget_advice(self.config)],
            "channels": {},
        }
        if incident is None:
            return result
        result["warnings"] += [
            str(a)
            for a in incident_advice(incident, self.config.channels, self.config.cadence, now)
        ]
        others = [i for i in view.incidents if i.id != incident.id]
        with without_advice():  # shown on the page: not logged at every keystroke
            shown = preview(self.config, [*others, incident], now, incident.id)
        tz = self.config.timezone
        for name, channel in self.config.channels.items():
            matching = channel.matches(incident.severity, incident.services, incident.regions)
            result["channels"][name] = {
                "platform": channel.platform,
                "language": channel.language,
                "posts": [],
                "note": "" if matching else "this channel does not post this incident (filters)",
            }
        for s in shown:
            d = s.to_json()
            post = s.recorded.post
            result["channels"][post.channel]["posts"].append(
                {
                    "at": s.at.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z"),
                    "now": s.at <= now,
                    "kind": d["kind"],
                    "next_update_at": (
                        post.next_update_at.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")
                        if post.next_update_at
                        else None
                    ),
                    "parts": [
                        {**part, "reply": i > 0 or post.sequence > 1}
                        for i, part in enumerate(d["parts"])
                    ],
                }
            )
        return result

    # -- publishing ------------------------------------------------------------------------

    def publish(
        self, form: Mapping[str, str], incident_id: str | None, base_hash: str, author: str
    ) -> Outcome:
        """Save the form into the state file unless it is invalid or the file changed."""
        with self._lock:
            now = utcnow()
            incident, data, errors, view = self.validate(form, incident_id, now)
            if errors:
                general = errors.pop("", [])
                return Outcome(errors=errors, general=general)
            assert incident is not None
            if view.hash != base_hash and incident_id is not None:
                # (A new incident overwrites nothing: it is appended to the file as it is
                # now, its id checked against it above.)
                return self._conflict(form, base_hash, view, incident.id)
            path = self.config.state_file
            if incident_id is None:
                changes = dict(data)

                def write() -> None:
                    append_incident(
                        path, changes, languages=self.languages, expected_sha256=view.hash
                    )
            else:
                current = view.incident(incident_id)
                if current is None:
                    return Outcome(general=[f"no incident {incident_id!r} in {path}"])
                shown = values_of(current, self.languages, self.config.timezone)
                touched = edited(form, shown, self.languages)
                changes = {
                    name: value
                    for name, value in changes_between(current, incident, data).items()
                    if name in touched
                }
                if not changes:
                    return Outcome(saved={}, hash_after=view.hash)

                def write() -> None:
                    apply_changes(
                        path,
                        incident_id,
                        changes,
                        languages=self.languages,
                        expected_sha256=view.hash,
                    )

            try:
                write()
            except StateFileError as exc:
                if CHANGED_MESSAGE in str(exc) and incident_id is None:
                    return Outcome(
                        general=["the state file changed as it was being saved: publish again"]
                    )
                if CHANGED_MESSAGE in str(exc):
                    return self._conflict(form, base_hash, self.state(), incident.id)
                return Outcome(general=[p.message for p in exc.problems])
            after = self.state().hash
            self._audit(author, incident.id, sorted(changes), view.hash, after, now, incident_id)
            return Outcome(saved=changes, hash_after=after)

    def _conflict(
        self, form: Mapping[str, str], base_hash: str, view: StateView, incident_id: str
    ) -> Outcome:
        """Refused: someone saved since the form was opened. What they changed, and the form
        rebased on their save (so publishing again keeps their changes and adds yours)."""
        outcome = Outcome()
        with self._seen_lock:
            before = self._seen.get(base_hash)
        now_incident = view.incident(incident_id)
        then = next((i for i in before or [] if i.id == incident_id), None)
        if now_incident is None:
            outcome.conflict = [f"incident {incident_id!r} is no longer in the state file"]
            return outcome
        if then is None:
            # The console restarted since the page was opened: what it showed is unknown.
            outcome.conflict = [
                "the state file was saved by someone else since this page was opened"
            ]
            return outcome
        tz = self.config.timezone
        old = values_of(then, self.languages, tz)
        new = values_of(now_incident, self.languages, tz)
        labels = form_labels(self.languages)
        outcome.rebased, both = rebase(form, old, new)

        def said(value: str, key: str) -> str:
            # A field both changed is shown whole: the person must weigh theirs against it.
            return (value if key in both else _short(value)) or "(empty)"

        outcome.conflict = [
            f"{label}: {said(old[key], key)} → {said(new[key], key)}"
            for key, label in labels.items()
            if old.get(key) != new.get(key)
        ] or ["other incidents in the state file changed"]
        outcome.rebased_hash = view.hash
        outcome.both_changed = [labels[key] for key in both]
        return outcome

    def _audit(
        self,
        author: str,
        incident_id: str,
        fields: list[str],
        before: str,
        after: str,
        now: datetime,
        existing: str | None,
    ) -> None:
        entry = {
            "time": now.isoformat(timespec="seconds"),
            "author": author,
            "incident_id": incident_id,
            "action": "edit" if existing else "new",
            "fields": fields,
            "state_file": str(self.config.state_file),
            "hash_before": before,
            "hash_after": after,
        }
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.config.data_dir / AUDIT_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry, ensure_ascii=False) + "\n")


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    return text if len(text) <= 120 else text[:119] + "…"
