"""The plain data the whole service talks about: incidents, planned posts, outbox records.

Nothing here does I/O. Every other module imports from here, never the other way round.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, NamedTuple

ALL_LANGUAGES = "*"


class IncidentKind(enum.StrEnum):
    INCIDENT = "incident"
    MAINTENANCE = "maintenance"


INCIDENT_STATUSES = ("investigating", "identified", "monitoring", "resolved")
MAINTENANCE_STATUSES = ("scheduled", "in_progress", "completed")
FINAL_STATUSES = frozenset({"resolved", "completed"})
SEVERITIES = ("minor", "major", "critical")


class PostKind(enum.StrEnum):
    OPENED = "opened"
    UPDATE = "update"
    REMINDER = "reminder"
    RESOLVED = "resolved"
    SCHEDULED = "scheduled"
    STARTED = "started"
    COMPLETED = "completed"

    @property
    def is_final(self) -> bool:
        return self in (PostKind.RESOLVED, PostKind.COMPLETED)

    @property
    def is_droppable(self) -> bool:
        """Whether a newer post about the same incident may replace this one unsent.

        Openings and closings are never dropped: readers must see a thread start and end.
        """
        return self in (PostKind.UPDATE, PostKind.REMINDER)


class PostState(enum.StrEnum):
    PENDING = "pending"  # recorded, not yet handed to the platform
    SENDING = "sending"  # handed to the platform; outcome not yet recorded
    SENT = "sent"  # the platform confirmed it
    FAILED = "failed"  # the platform refused it for good (e.g. 422)
    SUPERSEDED = "superseded"  # replaced, unsent, by a post about a newer state


@dataclass(frozen=True)
class Localized:
    """A text in one or more languages. Key ``*`` applies to every language."""

    values: Mapping[str, str]

    def get(self, language: str) -> str | None:
        if language in self.values:
            return self.values[language]
        return self.values.get(ALL_LANGUAGES)

    def languages(self) -> frozenset[str]:
        return frozenset(self.values)

    def covers(self, language: str) -> bool:
        return language in self.values or ALL_LANGUAGES in self.values

    def to_json(self) -> dict[str, str]:
        return dict(self.values)

    @classmethod
    def of(cls, value: str | Mapping[str, str] | None) -> Localized | None:
        if value is None:
            return None
        if isinstance(value, str):
            return cls({ALL_LANGUAGES: value})
        return cls(dict(value))


class Names(tuple[str, ...]):
    """Names of services or regions: one list for every language, or one per language.

    As a tuple it holds every name in any language, once (what channel filters match on);
    :meth:`get` gives the list for one language, as posts show it.
    """

    by_language: Mapping[str, tuple[str, ...]]

    def __new__(cls, names: Mapping[str, Iterable[str]] | Iterable[str] = ()) -> Names:
        if isinstance(names, Names):
            table = dict(names.by_language)
        elif isinstance(names, Mapping):
            table = {str(k): tuple(v) for k, v in names.items()}
        else:
            table = {ALL_LANGUAGES: tuple(names)}
        every = tuple(dict.fromkeys(name for group in table.values() for name in group))
        self = super().__new__(cls, every)
        self.by_language = table
        return self

    def get(self, language: str, fallback: str = "en") -> tuple[str, ...]:
        """The names for ``language`` ("fr-CA" finds "fr"), else for every language, else
        ``fallback``'s, else any."""
        table = self.by_language
        for key in (language, language.replace("_", "-").split("-")[0], ALL_LANGUAGES, fallback):
            if key in table:
                return table[key]
        return next(iter(table.values()), ())

    def covers(self, language: str) -> bool:
        return language in self.by_language or ALL_LANGUAGES in self.by_language

    def to_json(self) -> list[str] | dict[str, list[str]]:
        if set(self.by_language) <= {ALL_LANGUAGES}:
            return list(self)
        return {k: list(v) for k, v in self.by_language.items()}


def names_in(value: Iterable[str], language: str) -> tuple[str, ...]:
    """Service or region names as ``language`` reads them (a plain tuple is for all)."""
    return value.get(language) if isinstance(value, Names) else tuple(value)


class FieldKind(enum.Enum):
    """What an incident field holds; validation, storage and templates follow from it."""

    ID = "id"  # the incident's stable identifier
    KIND = "kind"  # incident or maintenance: decides which statuses and fields apply
    ENUM = "enum"  # one of a few words
    LOCALIZED = "localized"  # a text, or a table of texts by language
    STRINGS = "strings"  # a list of non-empty strings
    NAMES = "names"  # a list of names, or a table of lists by language (Names)
    DATETIME = "datetime"  # an aware datetime
    URL = "url"  # an http(s) URL
    BOOL = "bool"


@dataclass(frozen=True)
class FieldRule:
    """How one incident field is written and checked (the ``metadata`` of its declaration)."""

    kind: FieldKind
    # Kinds of incident for which the field must be written.
    required_for: frozenset[IncidentKind] = frozenset()
    # What the "missing" problem says the field is, e.g. "(when it began)".
    missing: str = ""
    # The only kind of incident that may have the field.
    only_for: IncidentKind | None = None
    # When absent (and not required), take this other field's value.
    default_from: str | None = None
    # Must be strictly after this other field / must not be before it.
    after: str | None = None
    not_before: str | None = None
    # The allowed words of an enum: one tuple, or one per incident kind.
    choices: tuple[str, ...] | Mapping[IncidentKind, tuple[str, ...]] = ()
    # Whether templates see the field as ``incident.<name>``.
    in_view: bool = True
    # Templates show the field through a label (``<name>_label``, from i18n).
    labelled: bool = False
    # The ``draft`` command's option for the field, and its place among them.
    draft_option: str | None = None
    draft_order: int = 0
    # The value in the template check's "all fields" samples (None: not set there), and
    # whether it only makes sense once the incident is over.
    sample: Any = None
    final_only: bool = False
    # The incident's status page link: left out of posts on a channel with include_url off.
    status_link: bool = False
    # A time to come (a promise, an expected recovery): "HH:MM" already past means tomorrow.
    to_come: bool = False

    @property
    def always_required(self) -> bool:
        return self.required_for == frozenset(IncidentKind)


_EVERY_KIND = frozenset(IncidentKind)


def _rule(kind: FieldKind, **rule: Any) -> dict[str, FieldRule]:
    """The ``metadata`` of a declared incident field."""
    return {"rule": FieldRule(kind, **rule)}


_SAMPLE_URL = "https://status.example.com/incidents/sample?id=42"


@dataclass(frozen=True, kw_only=True)
class Incident:
    """One incident or maintenance as ops describe it (one entry of the state file).

    Each field is declared once, here, with its rule; the state-file and event validation,
    the store's JSON, the template context and the draft command follow from the
    declarations. Adding a field is one declaration plus templates and docs.
    """

    id: str = field(
        metadata=_rule(
            FieldKind.ID,
            required_for=_EVERY_KIND,
            missing='(add a stable one, e.g. id = "sbg-power-2017-11-09")',
        )
    )
    kind: IncidentKind = field(default=IncidentKind.INCIDENT, metadata=_rule(FieldKind.KIND))
    title: Localized = field(
        metadata=_rule(
            FieldKind.LOCALIZED,
            required_for=_EVERY_KIND,
            missing="(a short public title, in every posting language)",
        )
    )
    status: str = field(
        metadata=_rule(
            FieldKind.ENUM,
            required_for=_EVERY_KIND,
            choices={
                IncidentKind.INCIDENT: INCIDENT_STATUSES,
                IncidentKind.MAINTENANCE: MAINTENANCE_STATUSES,
            },
            labelled=True,
            draft_option="--status",
            draft_order=1,
        )
    )
    severity: str = field(
        default="major",
        metadata=_rule(
            FieldKind.ENUM,
            choices=SEVERITIES,
            labelled=True,
            draft_option="--severity",
            draft_order=5,
            sample="critical",
        ),
    )
    # A list for every language, or a table of lists by language (``Names``).
    services: tuple[str, ...] = field(
        default=(),
        metadata=_rule(
            FieldKind.NAMES,
            sample=Names(
                {
                    "en": ("Dedicated servers", "Public Cloud", "VPS"),
                    "fr": ("Serveurs dédiés", "Public Cloud", "VPS"),
                }
            ),
        ),
    )
    regions: tuple[str, ...] = field(
        default=(), metadata=_rule(FieldKind.NAMES, sample=("SBG1", "SBG2"))
    )
    started_at: datetime = field(
        metadata=_rule(
            FieldKind.DATETIME,
            required_for=frozenset({IncidentKind.INCIDENT}),
            missing="(when it began)",
            default_from="starts_at",
        )
    )
    message: Localized | None = field(
        default=None,
        metadata=_rule(
            FieldKind.LOCALIZED,
            draft_option="--message",
            draft_order=2,
            sample="Servers are unreachable; teams are on site",
        ),
    )
    cause: Localized | None = field(
        default=None,
        metadata=_rule(
            FieldKind.LOCALIZED,
            draft_option="--cause",
            draft_order=3,
            sample="both power feeds failed",
        ),
    )
    workaround: Localized | None = field(
        default=None,
        metadata=_rule(
            FieldKind.LOCALIZED,
            draft_option="--workaround",
            draft_order=4,
            sample="Fail over to another region.",
        ),
    )
    # The expected recovery time (maintenance: end of work), shown in every non-final post.
    eta: datetime | None = field(
        default=None,
        metadata=_rule(
            FieldKind.DATETIME,
            draft_option="--eta",
            draft_order=7,
            sample=datetime(2017, 11, 9, 16, 47, tzinfo=UTC),
            to_come=True,
        ),
    )
    next_update_at: datetime | None = field(
        default=None,
        metadata=_rule(
            FieldKind.DATETIME,
            in_view=False,
            draft_option="--next-update",
            draft_order=6,
            to_come=True,
        ),
    )
    url: str | None = field(
        default=None, metadata=_rule(FieldKind.URL, sample=_SAMPLE_URL, status_link=True)
    )
    resolved_at: datetime | None = field(
        default=None, metadata=_rule(FieldKind.DATETIME, not_before="started_at", final_only=True)
    )
    data_loss: bool | None = field(
        default=None, metadata=_rule(FieldKind.BOOL, sample=False, final_only=True)
    )
    postmortem_url: str | None = field(
        default=None,
        metadata=_rule(
            FieldKind.URL,
            sample="https://status.example.com/postmortems/sample",
            final_only=True,
        ),
    )
    starts_at: datetime | None = field(
        default=None,
        metadata=_rule(
            FieldKind.DATETIME,
            required_for=frozenset({IncidentKind.MAINTENANCE}),
            missing="(required for a maintenance)",
            only_for=IncidentKind.MAINTENANCE,
        ),
    )
    ends_at: datetime | None = field(
        default=None,
        metadata=_rule(
            FieldKind.DATETIME,
            required_for=frozenset({IncidentKind.MAINTENANCE}),
            missing="(required for a maintenance)",
            only_for=IncidentKind.MAINTENANCE,
            after="starts_at",
        ),
    )
    # Where this incident was described, for error messages: "path:line".
    origin: str = field(default="", compare=False)

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    def change_fingerprint(self) -> tuple[Any, ...]:
        """What makes a new public update worth posting (status, message, cause,
        workaround, expected recovery time, and a maintenance window moved: readers must
        hear of the new date)."""

        def lz(v: Localized | None) -> tuple[tuple[str, str], ...]:
            return tuple(sorted(v.values.items())) if v else ()

        core = (self.status, lz(self.message), lz(self.cause), lz(self.workaround))
        # Appended only when they apply, so the fingerprints of what was stored before
        # these counted do not change (a changed fingerprint is a new revision: a post).
        eta = (self.eta.isoformat(),) if self.eta else ()
        window: tuple[Any, ...] = ()
        if self.kind is IncidentKind.MAINTENANCE:
            window = (tuple(t.isoformat() if t else None for t in (self.starts_at, self.ends_at)),)
        return core + eta + window

    def with_changes(self, changes: Mapping[str, Any]) -> Incident:
        """This incident with ops' changes applied; a localized field merges by language.

        The same merge as the state-file editor writes: a table of texts gains or changes
        languages; a text for every language (a plain string) is replaced by what is given.
        Values are not validated here (validation checks the result).
        """
        values: dict[str, Any] = {}
        for name, value in changes.items():
            rule = INCIDENT_FIELDS.get(name)
            current = getattr(self, name)
            if rule is not None and rule.kind is FieldKind.NAMES:
                if (
                    isinstance(current, Names)
                    and isinstance(value, Mapping)
                    and ALL_LANGUAGES not in current.by_language
                ):
                    value = Names({**current.by_language, **value})
                elif isinstance(value, Mapping | list | tuple):
                    value = Names(value)
            elif rule is not None and rule.kind is FieldKind.LOCALIZED:
                if (
                    isinstance(current, Localized)
                    and isinstance(value, Mapping)
                    and ALL_LANGUAGES not in current.values
                ):
                    value = Localized({**current.values, **value})
                elif isinstance(value, str | Mapping):
                    value = Localized.of(value)
            values[name] = value
        return replace(self, **values)

    def content_json(self) -> dict[str, Any]:
        """:meth:`to_json` without where it was described: what two sources writing the same
        incident agree on (``origin`` kept as a key, empty, so digests stay as they were)."""
        return self.to_json() | {"origin": ""}

    def to_json(self) -> dict[str, Any]:
        """Every field as JSON data (None when not set), plus ``origin``."""
        data = {
            name: _to_json(rule.kind, getattr(self, name)) for name, rule in INCIDENT_FIELDS.items()
        }
        data["origin"] = self.origin
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Incident:
        """The incident :meth:`to_json` wrote."""
        values: dict[str, Any] = {}
        for name, kind, default in _json_readers():
            value = _from_json(kind, data.get(name))
            if value is None:
                value = default
            values[name] = value
        return cls(**values, origin=data.get("origin", ""))


@lru_cache(maxsize=1)
def _json_readers() -> tuple[tuple[str, FieldKind, Any], ...]:
    """(name, kind, value when absent) per declared field, worked out once: the store reads
    every active incident on each plan."""
    readers = []
    for f in fields(Incident):
        rule = f.metadata.get("rule")
        if rule is None:
            continue
        if f.default is not MISSING:
            absent = f.default
        elif rule.kind is FieldKind.LOCALIZED:
            absent = Localized({})  # a required text stored empty reads back empty
        else:
            absent = None
        readers.append((f.name, rule.kind, absent))
    return tuple(readers)


def _to_json(kind: FieldKind, value: Any) -> Any:
    if value is None:
        return None
    if kind is FieldKind.LOCALIZED:
        return value.to_json() if value else None
    if kind is FieldKind.DATETIME:
        return value.isoformat()
    if kind is FieldKind.KIND:
        return value.value
    if kind is FieldKind.STRINGS:
        return list(value)
    if kind is FieldKind.NAMES:
        return value.to_json() if isinstance(value, Names) else list(value)
    return value


def _from_json(kind: FieldKind, value: Any) -> Any:
    if value is None:
        return None
    if kind is FieldKind.LOCALIZED:
        return Localized.of(value)
    if kind is FieldKind.DATETIME:
        return datetime.fromisoformat(value) if value else None
    if kind is FieldKind.KIND:
        return IncidentKind(value)
    if kind is FieldKind.STRINGS:
        return tuple(value)
    if kind is FieldKind.NAMES:
        return Names(value)
    return value


# The declared fields, in declaration order: name -> rule.
INCIDENT_FIELDS: Mapping[str, FieldRule] = {
    f.name: f.metadata["rule"] for f in fields(Incident) if "rule" in f.metadata
}
# The key that names an incident in every source (state file, events).
ID_FIELD = next(name for name, rule in INCIDENT_FIELDS.items() if rule.kind is FieldKind.ID)
# The key that says whether an entry is an incident or a maintenance.
KIND_FIELD = next(name for name, rule in INCIDENT_FIELDS.items() if rule.kind is FieldKind.KIND)
# The update's own words: what ops write most (the thread cap blames it first) and replace
# but never delete (a state-file save that lost it was cut short).
MESSAGE_FIELD = "message"


def opened(data: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """``data`` (an entry as the state file holds it) with what a newly opened incident
    holds unless its author says otherwise (``draft --new``, the console's new page): an
    incident began ``now`` and is being investigated; a maintenance is scheduled, its window
    for its author to give. A kind that is neither is left for validation to refuse."""
    kind = data.get(KIND_FIELD, IncidentKind.INCIDENT)
    defaults: dict[str, Any] = {}
    if kind == IncidentKind.INCIDENT:
        defaults = {"started_at": now, "status": INCIDENT_STATUSES[0]}
    elif kind == IncidentKind.MAINTENANCE:
        defaults = {"status": MAINTENANCE_STATUSES[0]}
    return {**data, **{k: v for k, v in defaults.items() if k not in data}}


def sample_incident(full: bool, base: Incident, **values: Any) -> Incident:
    """An incident for the template check: ``base`` with ``values``, plus with ``full`` every
    field that has a declared sample, applies to its kind and status, and is not set in
    ``base`` or ``values``."""
    incident = replace(base, **values)
    if not full:
        return incident
    samples: dict[str, Any] = {}
    for f in fields(Incident):
        rule = f.metadata.get("rule")
        if rule is None or rule.sample is None or f.name in values:
            continue
        if getattr(base, f.name) != f.default:
            continue
        if (rule.only_for is not None and rule.only_for is not incident.kind) or (
            rule.final_only and not incident.is_final
        ):
            continue
        sample = rule.sample
        if rule.kind is FieldKind.LOCALIZED:
            sample = Localized.of(sample)
        samples[f.name] = sample
    return replace(incident, **samples)


@dataclass(frozen=True)
class Snapshot:
    """An incident as the store knows it: ops' description plus the store's revision number."""

    incident: Incident
    revision: int
    first_seen_at: datetime
    changed_at: datetime
    previous_status: str | None = None


@dataclass(frozen=True)
class ThreadState:
    """What one channel has already said about one incident."""

    incident_id: str
    channel: str
    last_revision: int
    last_kind: PostKind
    last_status: str
    last_planned_at: datetime
    promised_at: datetime | None  # None once closed
    post_count: int
    closed: bool
    last_post_key: str | None  # idempotency key of the thread's last part recorded
    reminder_count: int = 0
    # When the thread was reopened (a post after its closing one): its cadence starts again.
    reopened_at: datetime | None = None


class ThreadTiming(NamedTuple):
    """What the planner needs to tell whether an open incident may need a post now, and when
    it will, without reading the incident whole: one per thread of an active incident, or
    one with ``channel`` None for an active incident that has no thread yet
    (``DataStore.thread_timings``, ``planner.due``)."""

    incident_id: str
    revision: int  # the incident's current revision
    final: bool  # the incident is resolved / completed
    asked_at: datetime | None  # the incident's ``next_update_at`` (ops asked for it)
    channel: str | None
    # What a maintenance not started needs (``planner.not_started``): kind, status, start.
    kind: str = "incident"
    status: str = ""
    starts_at: datetime | None = None
    last_revision: int = 0
    closed: bool = False
    promised_at: datetime | None = None
    last_planned_at: datetime | None = None


# The incident fields ``DataStore.thread_timings`` reads from the stored JSON, by their
# placeholder in its query (``store.rows.TIMING_COLUMNS``): asked, kind, status, starts.
TIMING_FIELDS: Mapping[str, str] = {
    "asked": "next_update_at",
    "kind": "kind",
    "status": "status",
    "starts": "starts_at",
}


@dataclass(frozen=True)
class PlannedPost:
    """The planner's decision: post ``kind`` about ``revision`` on ``channel`` now."""

    incident_id: str
    channel: str
    kind: PostKind
    revision: int
    sequence: int  # position of this post in the thread, from 1
    planned_at: datetime
    next_update_at: datetime | None  # the promise this post makes; None for a final post

    def key(self, part: int = 1) -> str:
        """The idempotency key of one part: stable across restarts and replays."""
        return (
            f"{self.incident_id}:r{self.revision}:{self.channel}:"
            f"{self.kind.value}.{self.sequence}:p{part}"
        )


@dataclass(frozen=True)
class OutboxPost:
    """One part of one post as recorded in the outbox, ready to deliver."""

    key: str
    channel: str
    incident_id: str
    kind: PostKind
    revision: int
    sequence: int
    part: int
    parts: int
    text: str
    length: int
    limit: int
    language: str
    reply_to_key: str | None
    state: PostState
    planned_at: datetime
    next_update_at: datetime | None = None  # the promise this post makes
    remote_id: str | None = None
    remote_url: str | None = None
    attempts: int = 0
    last_error: str | None = None
    sent_at: datetime | None = None
    next_attempt_at: datetime | None = None


@dataclass(frozen=True)
class ChannelInfo:
    """What templates and the planner need to know of a channel."""

    name: str
    platform: str  # "x", "mastodon" or "dryrun"
    language: str
    include_url: bool = True  # whether posts carry the incident's status page link
