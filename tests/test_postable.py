"""Accepted means postable: whatever a door accepts, the planner and renderer can post.

The inputs are generated from the schema's declarations (``model.INCIDENT_FIELDS``), one
strategy per field kind, hostile values included (lone surrogates, control characters,
huge texts, dates from year 1 to 9999): a new field is fuzzed without touching this file.
Each accepted event must be accepted identically by the state file, and posted on every
channel in a simulation, with no error logged: what would exceed a channel's thread cap
(``max_parts``) is refused at the door by the check every door runs (``app.fit_check``).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import MASTODON_FR, X_EN, config_toml

from broadcaster.app import fit_check
from broadcaster.config import Config, load_config
from broadcaster.events import EventError, decode
from broadcaster.model import INCIDENT_FIELDS, FieldKind, FieldRule, IncidentKind
from broadcaster.rehearsal import simulate
from broadcaster.statefile import Check, StateFileError, parse_incident
from broadcaster.statefile.validate import state_from_text

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
# Every character, lone surrogates and controls included, with plain text most of the time.
ANY_CHAR = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=())
TEXT = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=40),
    st.text(ANY_CHAR, max_size=40),
    # Long texts, around the size limit, cheaply.
    st.tuples(st.sampled_from(["a", "é\n", "👩‍👩‍👧"]), st.integers(900, 2600)).map(
        lambda t: t[0] * t[1]
    ),
)
# Around X's cap of 6 parts (from 38 repeats on), and well over it.
LONG_MESSAGE = st.sampled_from([20, 34, 36, 37, 38, 39, 60, 150]).map(
    lambda n: "Feed A is back, feed B is not. " * n
)
OFFSETS = st.sampled_from([UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12))])


PLAIN = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=40)
NEAR = st.datetimes(
    min_value=datetime(2026, 2, 1), max_value=datetime(2026, 4, 1), timezones=OFFSETS
).map(lambda d: d.isoformat())


def _words(rule: FieldRule, kind: IncidentKind | None) -> list[str]:
    if isinstance(rule.choices, dict):
        if kind is not None:
            return list(rule.choices[kind])
        return sorted({w for words in rule.choices.values() for w in words})
    return list(rule.choices)


def _good(rule: FieldRule, kind: IncidentKind) -> st.SearchStrategy[Any]:
    """A plausible value of the field's kind, as a well-behaved tool sends it."""
    strategies: dict[FieldKind, st.SearchStrategy[Any]] = {
        FieldKind.ID: st.just("sbg-power"),
        FieldKind.KIND: st.just(kind.value),
        FieldKind.LOCALIZED: st.one_of(PLAIN, st.fixed_dictionaries({"en": PLAIN, "fr": PLAIN})),
        FieldKind.STRINGS: st.lists(PLAIN, min_size=1, max_size=3),
        FieldKind.NAMES: st.one_of(
            st.lists(PLAIN, min_size=1, max_size=3),
            st.fixed_dictionaries(
                {"en": st.lists(PLAIN, min_size=1, max_size=3), "fr": st.lists(PLAIN, max_size=3)}
            ),
        ),
        FieldKind.DATETIME: NEAR,
        FieldKind.URL: PLAIN.map(lambda t: "https://status.example.com/" + t.replace(" ", "")),
        FieldKind.BOOL: st.booleans(),
    }
    if rule.kind is FieldKind.ENUM:
        return st.sampled_from(_words(rule, kind))
    if rule.kind not in strategies:
        raise AssertionError(f"no strategy for {rule.kind}: add one")
    return strategies[rule.kind]


def _hostile(rule: FieldRule) -> st.SearchStrategy[Any]:
    """Anything of the field's kind a careless or hostile sender may produce."""
    strategies: dict[FieldKind, st.SearchStrategy[Any]] = {
        FieldKind.ID: st.from_regex(r"[a-z0-9._-]{1,200}", fullmatch=True),
        FieldKind.KIND: st.sampled_from([k.value for k in IncidentKind]),
        FieldKind.ENUM: st.sampled_from(_words(rule, None)),
        FieldKind.LOCALIZED: st.one_of(TEXT, st.fixed_dictionaries({"en": TEXT, "fr": TEXT})),
        FieldKind.STRINGS: st.lists(TEXT, min_size=1, max_size=60),
        FieldKind.NAMES: st.one_of(
            st.lists(TEXT, min_size=1, max_size=60),
            st.dictionaries(
                st.sampled_from(["en", "fr", "de"]), st.lists(TEXT, max_size=60), max_size=3
            ),
        ),
        FieldKind.DATETIME: st.datetimes(timezones=OFFSETS).map(lambda d: d.isoformat()),
        FieldKind.URL: TEXT.map(lambda t: "https://status.example.com/" + t),
        FieldKind.BOOL: st.booleans(),
    }
    return strategies[rule.kind]


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    """A plausible event for a kind, with a few fields replaced by hostile values."""
    kind = draw(st.sampled_from(list(IncidentKind)))
    event: dict[str, Any] = {}
    for name, rule in INCIDENT_FIELDS.items():
        if rule.only_for is not None and rule.only_for is not kind:
            continue
        if rule.always_required or kind in rule.required_for or draw(st.booleans()):
            event[name] = draw(_good(rule, kind))
    names = list(INCIDENT_FIELDS)
    for name in draw(st.lists(st.sampled_from(names), max_size=3, unique=True)):
        event[name] = draw(_hostile(INCIDENT_FIELDS[name]))
    if draw(st.integers(0, 4)) == 0:  # a long message, around the thread cap and over it
        event["message"] = draw(LONG_MESSAGE)
    return event


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    path = tmp_path_factory.mktemp("postable") / "config.toml"
    path.write_text(config_toml(X_EN, MASTODON_FR))
    return load_config(path)


@pytest.fixture(scope="module")
def fits(config: Config) -> Check:
    """The thread-cap check every door runs (the daemon's ``Editor.check_fits``)."""
    return fit_check(config)


class Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


TRIED = {"events": 0, "accepted": 0, "too_long": 0}


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(event=events())
def test_any_event_accepted_at_a_door_is_posted(
    config: Config, fits: Check, event: dict[str, Any]
) -> None:
    TRIED["events"] += 1
    languages = config.languages()
    raw = json.dumps(event).encode()  # \ud800 escaped, as a JavaScript tool sends it
    try:
        data = decode(raw, origin="fuzz")  # HTTP, spool and Redis
        incident = parse_incident(data, origin="fuzz", languages=languages)
    except (EventError, StateFileError):
        accepted_as_event = False
    else:
        too_long = list(fits(incident))  # what Daemon._apply_event refuses too
        accepted_as_event = not too_long
        TRIED["too_long"] += bool(too_long)
    # The state file, in its JSON form, takes exactly the same.
    state = json.dumps({"incidents": [event]})
    try:
        state_from_text(state, "state.json", "json", languages, check=fits)
    except StateFileError:
        accepted_in_state = False
    else:
        accepted_in_state = True
    assert accepted_in_state == accepted_as_event, event
    if not accepted_as_event:
        return
    TRIED["accepted"] += 1
    errors = Errors()
    logging.getLogger().addHandler(errors)
    try:
        shown = simulate(config, [(NOW, [incident])], NOW, NOW + timedelta(days=2))
    finally:
        logging.getLogger().removeHandler(errors)
    assert not errors.records, [r.getMessage() for r in errors.records]
    for item in shown:
        assert len(item.recorded.parts) <= config.channels[item.recorded.post.channel].max_parts
        for text, length, limit in item.recorded.parts:
            text.encode("utf-8")
            assert 0 < length <= limit
    if incident.kind is IncidentKind.INCIDENT and not incident.is_final:
        channels = {item.recorded.post.channel for item in shown}
        assert channels == {"x-en", "mastodon-fr"}, "an open incident is posted on every channel"


def test_the_fuzzer_tried_both_accepted_and_refused_events() -> None:
    """The property above is not vacuous (run after it, in file order)."""
    if TRIED["events"]:
        assert 0 < TRIED["accepted"] < TRIED["events"], TRIED
        assert TRIED["too_long"], ("some events were refused for the thread cap", TRIED)
