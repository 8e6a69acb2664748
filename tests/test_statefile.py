"""The state file: every problem names file, line, incident and field; updates keep edits."""

from __future__ import annotations

import json
import os
import random
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from broadcaster import statefile
from broadcaster.model import IncidentKind, Localized
from broadcaster.statefile import (
    Problem,
    StateFileError,
    apply_changes,
    load_state,
    load_timeline,
    parse_incident,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
BOTH = frozenset({"en", "fr"})
CET = timezone(timedelta(hours=1))

# Line numbers matter: tests below point at them.
BASE_TOML = """\
# ops notes: keep this comment
[[incidents]]
id = "sbg-power"
title = { en = "Power outage", fr = "Coupure électrique" }
status = "investigating"
severity = "critical"
services = ["VPS"]
started_at = 2017-11-09T07:23:00+01:00
message = { en = "We are investigating.", fr = "Nous enquêtons." }
"""

# Same incident; every key sits one line lower than in BASE_TOML.
BASE_JSON = """\
{
  "incidents": [
    {
      "id": "sbg-power",
      "title": {"en": "Power outage", "fr": "Coupure électrique"},
      "status": "investigating",
      "severity": "critical",
      "services": ["VPS"],
      "started_at": "2017-11-09T07:23:00+01:00",
      "message": {"en": "We are investigating.", "fr": "Nous enquêtons."}
    }
  ]
}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path, languages=BOTH) -> list[Problem]:
    with pytest.raises(StateFileError) as info:
        load_state(path, languages)
    assert str(info.value) == "\n".join(str(p) for p in info.value.problems)
    return info.value.problems


def find(
    problems: list[Problem], *, line: int | None, incident_id: str | None, field: str | None
) -> Problem:
    for p in problems:
        if (p.line, p.incident_id, p.field) == (line, incident_id, field):
            return p
    raise AssertionError(
        f"no problem at {line} {incident_id} {field} in:\n" + "\n".join(str(p) for p in problems)
    )


def assert_named(problem: Problem, path: Path, fragment: str) -> None:
    text = str(problem)
    where = f"{path}:{problem.line}:" if problem.line is not None else f"{path}:"
    assert text.startswith(where), text
    if problem.incident_id is not None:
        assert f"incident {problem.incident_id!r}" in text
    if problem.field is not None:
        assert f"field {problem.field!r}" in text
    assert fragment in text, text


# --------------------------------------------------------------------------------------
# The shipped examples


def test_examples_load_without_problems_in_both_formats():
    from_toml = load_state(EXAMPLES / "state.toml", BOTH)
    from_json = load_state(EXAMPLES / "state.json", BOTH)
    assert from_toml == from_json
    outage, maintenance = from_toml
    assert outage.id == "sbg-power-2017-11-09"
    assert outage.status == "identified" and outage.severity == "critical"
    assert outage.started_at == datetime(2017, 11, 9, 7, 23, tzinfo=CET)
    assert outage.started_at.utcoffset() == timedelta(hours=1)  # kept as written
    assert outage.regions == ("SBG",)
    assert "Public Cloud" in outage.services
    assert outage.cause is not None and outage.cause.get("fr")
    assert outage.url == "https://status.example.com/incidents/sbg-power"
    assert maintenance.kind is IncidentKind.MAINTENANCE
    assert maintenance.status == "scheduled"
    assert maintenance.started_at == maintenance.starts_at  # defaulted
    assert maintenance.ends_at is not None and maintenance.ends_at > maintenance.starts_at
    # every text is in both languages: load_state(..., BOTH) refuses one missing a language
    lines = (EXAMPLES / "state.toml").read_text().split("\n")
    for incident in from_toml:
        path, line = incident.origin.rsplit(":", 1)
        assert path == str(EXAMPLES / "state.toml")
        assert lines[int(line) - 1].strip() == "[[incidents]]"


def test_timeline_example_tells_the_day_in_order():
    steps = load_timeline(EXAMPLES / "timeline.toml", BOTH)
    assert len(steps) >= 6
    times = [at for at, _ in steps]
    assert times == sorted(times) and all(t.utcoffset() == timedelta(hours=1) for t in times)
    statuses = [incidents[0].status for _, incidents in steps]
    assert statuses[0] == "investigating" and statuses[-1] == "resolved"
    assert {"identified", "monitoring"} <= set(statuses)
    last = steps[-1][1][0]
    assert last.data_loss is False and last.resolved_at is not None
    assert any(incidents[0].workaround is not None for _, incidents in steps)


def test_base_fixtures_are_valid(tmp_path):
    toml_incidents = load_state(write(tmp_path, "state.toml", BASE_TOML), BOTH)
    json_incidents = load_state(write(tmp_path, "state.json", BASE_JSON), BOTH)
    assert toml_incidents == json_incidents
    assert toml_incidents[0].origin == f"{tmp_path / 'state.toml'}:2"
    assert json_incidents[0].origin == f"{tmp_path / 'state.json'}:3"


def _no_full_map(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the full source map was built for a valid file")

    monkeypatch.setattr(statefile.sourcemap, "toml_source_map", refuse)
    monkeypatch.setattr(statefile.sourcemap, "json_source_map", refuse)


def test_valid_files_do_not_build_the_full_source_map(tmp_path, monkeypatch):
    # Mapping every key costs as much as parsing; it is only needed to locate a problem.
    toml_path = write(tmp_path, "state.toml", BASE_TOML + BASE_TOML.replace("sbg-power", "b"))
    json_path = write(tmp_path, "state.json", BASE_JSON)
    _no_full_map(monkeypatch)
    assert [i.origin for i in load_state(toml_path, BOTH)] == [
        f"{toml_path}:2",
        f"{toml_path}:11",
    ]
    assert [i.origin for i in load_state(json_path, BOTH)] == [f"{json_path}:3"]
    example = EXAMPLES / "state.json"
    lines = example.read_text().split("\n")
    origins = [i.origin for i in load_state(example, BOTH)]
    assert len(origins) == 2
    for origin in origins:
        path, line = origin.rsplit(":", 1)
        assert path == str(example) and lines[int(line) - 1].strip() == "{"


def test_a_problem_still_builds_the_map_to_locate_it(tmp_path):
    path = write(tmp_path, "state.json", BASE_JSON.replace('"critical"', '"huge"'))
    problem = find(problems_of(path), line=7, incident_id="sbg-power", field="severity")
    assert_named(problem, path, "unknown severity 'huge'")


# Q stands for three double quotes, S for three single quotes.
MULTILINE_HEADERS_TOML = r"""[[incidents]]
id = "a"
title = "A"
status = "investigating"
started_at = 2017-11-09T07:23:00+01:00
message = S
Copy this to add one:
[[incidents]]
  [[ "incidents" ]]
S
cause = Q
[[incidents]]
Q
workaround = "it's \"S [[incidents]]"  # it's Q [[incidents]]

  [[ "incidents" ]] # indented, quoted, with a comment
id = "b"
title = 'B'
status = "investigating"
started_at = 2017-11-09T07:23:00+01:00
message = Qa quote at the end: Q"
[[incidents]]
id = "c"
title = "C"
status = "investigating"
started_at = 2017-11-09T07:23:00+01:00
""".replace("Q", '"' * 3).replace("S", "'" * 3)


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_origins_skip_headers_written_inside_multiline_strings(tmp_path, monkeypatch, newline):
    path = tmp_path / "state.toml"
    path.write_bytes(MULTILINE_HEADERS_TOML.replace("\n", newline).encode())
    _no_full_map(monkeypatch)
    incidents = load_state(path)
    assert [(i.id, i.origin) for i in incidents] == [
        ("a", f"{path}:1"),
        ("b", f"{path}:16"),
        ("c", f"{path}:22"),
    ]
    assert incidents[0].message is not None and "[[incidents]]" in incidents[0].message.get("en")
    assert incidents[1].message is not None and incidents[1].message.get("en").endswith('"')
    monkeypatch.undo()
    # A problem in such a file is located by the full map, which agrees.
    broken = MULTILINE_HEADERS_TOML.replace('title = "C"', 'title = ""')
    path.write_bytes(broken.replace("\n", newline).encode())
    problem = find(problems_of(path, ()), line=24, incident_id="c", field="title")
    assert_named(problem, path, "empty text")


def test_origins_of_incidents_written_inline(tmp_path):
    # No [[incidents]] header to find (one in a string does not count): the full map gives
    # the line of the key.
    text = (
        "# inline\n"
        "incidents = [\n"
        '  { id = "a", title = "A", status = "investigating", '
        'started_at = 2017-11-09T07:23:00+01:00, message = """\n[[incidents]]\n""" },\n'
        "]\n"
    )
    path = write(tmp_path, "state.toml", text)
    assert [i.origin for i in load_state(path)] == [f"{path}:2"]


# --------------------------------------------------------------------------------------
# Semantic problems, in both formats. (toml old, toml new, json old, json new, TOML line,
# field, fragment); in JSON the same key is one line lower.

CASES = {
    "unknown status": (
        'status = "investigating"',
        'status = "fixed"',
        '"status": "investigating"',
        '"status": "fixed"',
        5,
        "status",
        "unknown status 'fixed' (expected one of: investigating, identified, monitoring, resolved)",
    ),
    "maintenance status on an incident": (
        'status = "investigating"',
        'status = "scheduled"',
        '"status": "investigating"',
        '"status": "scheduled"',
        5,
        "status",
        'add kind = "maintenance"',
    ),
    "unknown severity": (
        'severity = "critical"',
        'severity = "huge"',
        '"severity": "critical"',
        '"severity": "huge"',
        6,
        "severity",
        "unknown severity 'huge' (expected one of: minor, major, critical)",
    ),
    "unknown kind": (
        'severity = "critical"',
        'kind = "outage"',
        '"severity": "critical"',
        '"kind": "outage"',
        6,
        "kind",
        "unknown kind 'outage' (expected one of: incident, maintenance)",
    ),
    "invalid id": (
        'id = "sbg-power"',
        'id = "SBG Power!"',
        '"id": "sbg-power"',
        '"id": "SBG Power!"',
        3,
        "id",
        "invalid id 'SBG Power!'",
    ),
    "services not a list": (
        'services = ["VPS"]',
        'services = "VPS"',
        '"services": ["VPS"]',
        '"services": "VPS"',
        7,
        "services",
        "expected a list of strings, got a string",
    ),
    "services item not a string": (
        'services = ["VPS"]',
        'services = ["VPS", 3]',
        '"services": ["VPS"]',
        '"services": ["VPS", 3]',
        7,
        "services",
        "item 2 is an integer",
    ),
    "naive datetime": (
        "started_at = 2017-11-09T07:23:00+01:00",
        "started_at = 2017-11-09T07:23:00",
        '"started_at": "2017-11-09T07:23:00+01:00"',
        '"started_at": "2017-11-09T07:23:00"',
        8,
        "started_at",
        "has no UTC offset",
    ),
    "not a datetime": (
        "started_at = 2017-11-09T07:23:00+01:00",
        'started_at = "this morning"',
        '"started_at": "2017-11-09T07:23:00+01:00"',
        '"started_at": "this morning"',
        8,
        "started_at",
        "not a datetime: 'this morning'",
    ),
    "missing language": (
        'title = { en = "Power outage", fr = "Coupure électrique" }',
        'title = { en = "Power outage" }',
        '"title": {"en": "Power outage", "fr": "Coupure électrique"}',
        '"title": {"en": "Power outage"}',
        4,
        "title.fr",
        "no 'fr' text",
    ),
    "empty title": (
        'title = { en = "Power outage", fr = "Coupure électrique" }',
        'title = "  "',
        '"title": {"en": "Power outage", "fr": "Coupure électrique"}',
        '"title": "  "',
        4,
        "title",
        "empty text",
    ),
    "empty message in one language": (
        'fr = "Nous enquêtons." }',
        'fr = "" }',
        '"fr": "Nous enquêtons."}',
        '"fr": ""}',
        9,
        "message.fr",
        "empty text",
    ),
    "url not http": (
        'severity = "critical"',
        'url = "ftp://status.example.com"',
        '"severity": "critical"',
        '"url": "ftp://status.example.com"',
        6,
        "url",
        "not an http(s) URL",
    ),
    "data_loss not a boolean": (
        'severity = "critical"',
        'data_loss = "no"',
        '"severity": "critical"',
        '"data_loss": "no"',
        6,
        "data_loss",
        "expected true or false, got a string",
    ),
    "maintenance fields on an incident": (
        'severity = "critical"',
        "ends_at = 2017-11-09T09:00:00+01:00",
        '"severity": "critical"',
        '"ends_at": "2017-11-09T09:00:00+01:00"',
        6,
        "ends_at",
        'only for a maintenance (kind = "maintenance")',
    ),
}


@pytest.mark.parametrize("fmt", ["toml", "json"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_semantic_problem_is_located(tmp_path, fmt, case):
    toml_old, toml_new, json_old, json_new, line, field, fragment = CASES[case]
    if fmt == "toml":
        assert toml_old in BASE_TOML
        text, expected_line = BASE_TOML.replace(toml_old, toml_new), line
    else:
        assert json_old in BASE_JSON
        text, expected_line = BASE_JSON.replace(json_old, json_new), line + 1
    path = write(tmp_path, f"state.{fmt}", text)
    incident_id = "SBG Power!" if case == "invalid id" else "sbg-power"
    problem = find(problems_of(path), line=expected_line, incident_id=incident_id, field=field)
    assert_named(problem, path, fragment)


def test_problem_text_matches_the_documented_shape():
    problem = Problem("state.toml", 12, "sbg-power", "status", "unknown status 'fixed'")
    assert (
        str(problem) == "state.toml:12: incident 'sbg-power' field 'status': unknown status 'fixed'"
    )
    assert str(Problem("state.toml", None, None, None, "oops")) == "state.toml: oops"


@pytest.mark.parametrize("fmt", ["toml", "json"])
def test_unknown_key_suggests_the_closest_known_key(tmp_path, fmt):
    if fmt == "toml":
        text = BASE_TOML.replace("started_at =", "startd_at =")
        key_line, header_line = 8, 2
    else:
        text = BASE_JSON.replace('"started_at":', '"startd_at":')
        key_line, header_line = 9, 3
    path = write(tmp_path, f"state.{fmt}", text)
    problems = problems_of(path)
    typo = find(problems, line=key_line, incident_id="sbg-power", field="startd_at")
    assert_named(typo, path, "unknown key 'startd_at' (did you mean 'started_at'?)")
    # The now missing required field points at the incident itself.
    missing = find(problems, line=header_line, incident_id="sbg-power", field="started_at")
    assert_named(missing, path, "missing started_at")


@pytest.mark.parametrize("fmt", ["toml", "json"])
def test_missing_id_points_at_the_incident(tmp_path, fmt):
    if fmt == "toml":
        text, line = BASE_TOML.replace('id = "sbg-power"\n', ""), 2
    else:
        text, line = BASE_JSON.replace('"id": "sbg-power",\n', ""), 3
    path = write(tmp_path, f"state.{fmt}", text)
    problem = find(problems_of(path), line=line, incident_id=None, field="id")
    assert_named(problem, path, "incident #1 has no id")


@pytest.mark.parametrize("fmt", ["toml", "json"])
def test_duplicate_id_names_both_lines(tmp_path, fmt):
    if fmt == "toml":
        text = BASE_TOML + "\n" + BASE_TOML.split("\n", 1)[1]  # lines 11..18 again
        first, second = 3, 12
    else:
        incident = json.loads(BASE_JSON)["incidents"][0]
        text = json.dumps({"incidents": [incident, incident]}, indent=2, ensure_ascii=False)
        lines = text.split("\n")
        id_lines = [n for n, line in enumerate(lines, 1) if '"id": "sbg-power"' in line]
        first, second = id_lines
    path = write(tmp_path, f"state.{fmt}", text)
    problem = find(problems_of(path), line=second, incident_id="sbg-power", field="id")
    assert_named(
        problem, path, f"duplicate id 'sbg-power': already used by the incident at line {first}"
    )


def test_language_check_only_for_configured_languages(tmp_path):
    text = BASE_TOML.replace(
        'title = { en = "Power outage", fr = "Coupure électrique" }', 'title = { en = "Power" }'
    )
    path = write(tmp_path, "state.toml", text)
    assert load_state(path, {"en"})[0].title == Localized({"en": "Power"})
    problems = problems_of(path, {"en", "fr", "de"})
    find(problems, line=4, incident_id="sbg-power", field="title.fr")
    find(problems, line=4, incident_id="sbg-power", field="title.de")
    # A plain string speaks every language.
    plain = write(
        tmp_path,
        "plain.toml",
        BASE_TOML.replace(
            'title = { en = "Power outage", fr = "Coupure électrique" }', 'title = "SBG down"'
        ),
    )
    assert load_state(plain, BOTH)[0].title.covers("de")


def test_sub_table_texts_are_located(tmp_path):
    text = """\
[[incidents]]
id = "sbg-power"
status = "investigating"
started_at = 2017-11-09T07:23:00+01:00

[incidents.title]
en = "Power outage"

[incidents.message]
en = "We are investigating."
fr = 42
"""
    path = write(tmp_path, "state.toml", text)
    problems = problems_of(path)
    assert_named(find(problems, line=6, incident_id="sbg-power", field="title.fr"), path, "no 'fr'")
    assert_named(
        find(problems, line=11, incident_id="sbg-power", field="message.fr"),
        path,
        "expected a string, got an integer",
    )


def test_toml_date_and_time_values_are_refused(tmp_path):
    path = write(
        tmp_path,
        "state.toml",
        BASE_TOML.replace("started_at = 2017-11-09T07:23:00+01:00", "started_at = 2017-11-09"),
    )
    problem = find(problems_of(path), line=8, incident_id="sbg-power", field="started_at")
    assert_named(problem, path, "a date without a time")


MAINTENANCE = """\
[[incidents]]
id = "sbg-network"
kind = "maintenance"
title = "Network upgrade"
status = "scheduled"
starts_at = 2030-03-10T22:00:00+01:00
ends_at = 2030-03-11T01:00:00+01:00
"""


def test_maintenance_checks(tmp_path):
    ok = load_state(write(tmp_path, "ok.toml", MAINTENANCE), BOTH)[0]
    assert ok.started_at == ok.starts_at == datetime(2030, 3, 10, 22, tzinfo=CET)

    backwards = write(
        tmp_path,
        "backwards.toml",
        MAINTENANCE.replace(
            "ends_at = 2030-03-11T01:00:00+01:00", "ends_at = 2030-03-10T21:00:00+01:00"
        ),
    )
    problem = find(problems_of(backwards), line=7, incident_id="sbg-network", field="ends_at")
    assert_named(problem, backwards, "must be after starts_at")

    same = write(
        tmp_path,
        "same.toml",
        MAINTENANCE.replace(
            "ends_at = 2030-03-11T01:00:00+01:00", "ends_at = 2030-03-10T22:00:00+01:00"
        ),
    )
    find(problems_of(same), line=7, incident_id="sbg-network", field="ends_at")

    missing = write(
        tmp_path,
        "missing.toml",
        "\n".join(
            line
            for line in MAINTENANCE.split("\n")
            if not line.startswith(("starts_at", "ends_at"))
        ),
    )
    problems = problems_of(missing)
    assert_named(
        find(problems, line=1, incident_id="sbg-network", field="starts_at"),
        missing,
        "missing starts_at (required for a maintenance)",
    )
    find(problems, line=1, incident_id="sbg-network", field="ends_at")

    wrong_status = write(tmp_path, "status.toml", MAINTENANCE.replace('"scheduled"', '"resolved"'))
    problem = find(problems_of(wrong_status), line=5, incident_id="sbg-network", field="status")
    assert_named(problem, wrong_status, "expected one of: scheduled, in_progress, completed")


def test_all_problems_are_reported_at_once(tmp_path):
    text = BASE_TOML.replace('status = "investigating"', 'status = "fixed"').replace(
        'severity = "critical"', 'severity = "huge"'
    ) + MAINTENANCE.replace('"scheduled"', '"later"')
    path = write(tmp_path, "state.toml", text)
    problems = problems_of(path)
    assert {(p.incident_id, p.field) for p in problems} == {
        ("sbg-power", "status"),
        ("sbg-power", "severity"),
        ("sbg-network", "status"),
    }
    assert [p.line for p in problems] == sorted(p.line for p in problems)


# --------------------------------------------------------------------------------------
# Syntax errors and the top level


def test_toml_syntax_error_names_line_incident_and_field(tmp_path):
    path = write(tmp_path, "state.toml", BASE_TOML.replace('"investigating"', "investigating"))
    [problem] = problems_of(path)
    assert (problem.line, problem.incident_id, problem.field) == (5, "sbg-power", "status")
    assert_named(problem, path, "TOML syntax error")
    assert "column 10" in str(problem) and "double quotes" in str(problem)


def test_toml_unclosed_multiline_string_points_where_it_opens(tmp_path):
    text = (
        BASE_TOML.replace(
            'message = { en = "We are investigating.", fr = "Nous enquêtons." }',
            'message = """We are investigating.',
        )
        + '\n[[incidents]]\nid = "other"\n'
    )
    path = write(tmp_path, "state.toml", text)
    [problem] = problems_of(path)
    assert (problem.line, problem.incident_id, problem.field) == (9, "sbg-power", "message")
    assert_named(problem, path, "never closed")


def test_toml_key_written_twice(tmp_path):
    text = BASE_TOML.replace('severity = "critical"', 'status = "identified"')
    path = write(tmp_path, "state.toml", text)
    [problem] = problems_of(path)
    assert (problem.line, problem.incident_id, problem.field) == (6, "sbg-power", "status")
    assert_named(problem, path, "'status' is written twice (first at line 5)")


def test_json_syntax_errors(tmp_path):
    missing_comma = write(
        tmp_path,
        "a.json",
        BASE_JSON.replace('"status": "investigating",', '"status": "investigating"'),
    )
    [problem] = problems_of(missing_comma)
    assert (problem.line, problem.incident_id, problem.field) == (6, "sbg-power", "status")
    assert_named(problem, missing_comma, "JSON syntax error: missing ','")

    trailing = write(
        tmp_path,
        "b.json",
        BASE_JSON.replace('"fr": "Nous enquêtons."}', '"fr": "Nous enquêtons."},'),
    )
    [problem] = problems_of(trailing)
    assert (problem.line, problem.incident_id, problem.field) == (10, "sbg-power", "message")
    assert_named(problem, trailing, "trailing ','")

    broken = write(tmp_path, "c.json", BASE_JSON.replace('"critical"', "critical"))
    [problem] = problems_of(broken)
    assert (problem.line, problem.incident_id, problem.field) == (7, "sbg-power", "severity")


def test_json_duplicate_key_points_at_the_value_that_counts(tmp_path):
    path = write(
        tmp_path, "state.json", BASE_JSON.replace('"severity": "critical",', '"status": "fixed",')
    )
    problems = problems_of(path)
    assert_named(
        find(problems, line=7, incident_id="sbg-power", field="status"),
        path,
        "written twice (first at line 6)",
    )
    assert any("unknown status 'fixed'" in p.message and p.line == 7 for p in problems)


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("state.toml", "[settings]\nx = 1\n", "unknown key 'settings'"),
        ("state.toml", "incident = []\n", "did you mean 'incidents'?"),
        ("state.toml", '[incidents]\nid = "a"\n', "[[incidents]]"),
        ("state.json", '{"incidents": [], "incident": []}', "did you mean 'incidents'?"),
        ("state.json", '[{"id": "a"}]', "expected a table"),
        ("state.json", '{"incidents": {"id": "a"}}', "must be a list"),
        ("state.json", '{"incidents": ["sbg"]}', "incident #1: expected a table"),
    ],
)
def test_top_level_problems(tmp_path, name, text, fragment):
    path = write(tmp_path, name, text)
    problems = problems_of(path)
    assert any(fragment in str(p) and str(p).startswith(f"{path}:1:") for p in problems), problems


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("state.toml", ""),
        ("state.toml", "# nothing yet\n"),
        ("state.toml", "incidents = []\n"),
        ("state.json", ""),
        ("state.json", "{}"),
        ("state.json", '{"incidents": []}'),
    ],
)
def test_empty_files_mean_no_incidents(tmp_path, name, text):
    assert load_state(write(tmp_path, name, text), BOTH) == []


def test_file_level_problems(tmp_path):
    yaml = write(tmp_path, "state.yaml", "incidents: []\n")
    [problem] = problems_of(yaml)
    assert_named(problem, yaml, "use .toml or .json")

    missing = tmp_path / "nope.toml"
    [problem] = problems_of(missing)
    assert_named(problem, missing, "cannot read the file")

    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(BASE_TOML.encode("latin-1"))
    [problem] = problems_of(latin1)
    assert problem.line == 4
    assert_named(problem, latin1, "not valid UTF-8")

    bom = tmp_path / "bom.toml"
    bom.write_bytes(b"\xef\xbb\xbf" + BASE_TOML.encode())
    assert load_state(bom, BOTH)[0].id == "sbg-power"


def test_malformed_input_only_ever_raises_state_file_error(tmp_path):
    rng = random.Random(20171109)
    junk = ['"', "'", "[", "]", "{", "}", "=", ",", "#", "\n", '"""', "\\", ".", ":", "\x00", "é"]
    sources = {
        "toml": (EXAMPLES / "state.toml").read_text(),
        "json": (EXAMPLES / "state.json").read_text(),
    }
    outcomes = {"ok": 0, "error": 0}
    for n in range(80):
        fmt = "toml" if n % 2 else "json"
        text = sources[fmt]
        for _ in range(rng.randint(1, 3)):
            lines = text.split("\n")
            op = rng.randrange(5)
            i = rng.randrange(len(lines))
            pos = rng.randrange(len(text) + 1)
            if op == 0:
                del lines[i]
                text = "\n".join(lines)
            elif op == 1:
                lines.insert(i, lines[rng.randrange(len(lines))])
                text = "\n".join(lines)
            elif op == 2:
                text = text[:pos] + rng.choice(junk) + text[pos:]
            elif op == 3:
                text = text[:pos]
            else:
                text = text[:pos] + text[pos + rng.randint(1, 20) :]
        path = write(tmp_path, f"fuzz{n}.{fmt}", text)
        try:
            result = load_state(path, BOTH)
        except StateFileError as exc:
            outcomes["error"] += 1
            assert exc.problems
            for problem in exc.problems:
                assert problem.path == str(path)
                assert "internal error" not in problem.message, (text, str(exc))
        else:
            outcomes["ok"] += 1
            assert isinstance(result, list)
    assert outcomes["error"] > 20


# --------------------------------------------------------------------------------------
# parse_incident (queue events)


def test_parse_incident_from_plain_data():
    data = json.loads(BASE_JSON)["incidents"][0]
    incident = parse_incident(data, origin="queue:42", languages=BOTH)
    assert incident.origin == "queue:42"
    assert incident.started_at == datetime(2017, 11, 9, 7, 23, tzinfo=CET)
    assert incident.message == Localized({"en": "We are investigating.", "fr": "Nous enquêtons."})
    assert parse_incident({**data, "cause": None}, origin="queue:42").cause is None

    with pytest.raises(StateFileError) as info:
        parse_incident({**data, "status": "fixed", "severity": 3}, origin="events.jsonl:7")
    assert [(p.path, p.line, p.incident_id, p.field) for p in info.value.problems] == [
        ("events.jsonl", 7, "sbg-power", "status"),
        ("events.jsonl", 7, "sbg-power", "severity"),
    ]
    with pytest.raises(StateFileError):
        parse_incident(["not", "a", "table"], origin="queue")  # type: ignore[arg-type]


def test_an_update_keeps_the_fields_it_does_not_carry_and_is_checked_whole():
    data = json.loads(BASE_JSON)["incidents"][0]
    current = parse_incident(data, origin="queue:1", languages=BOTH)
    updated = parse_incident(
        {"id": "sbg-power", "status": "identified", "message": None},
        origin="queue:2",
        languages=BOTH,
        current=current,
    )
    assert (updated.status, updated.severity, updated.services) == (
        "identified",
        "critical",
        ("VPS",),
    )
    assert updated.message is None and updated.origin == "queue:2"

    # The merged result is validated: a kind the current status does not fit is refused,
    # and a language now required is asked of the fields kept as well.
    with pytest.raises(StateFileError) as info:
        parse_incident({"id": "sbg-power", "kind": "maintenance"}, origin="q", current=current)
    assert {p.field for p in info.value.problems} >= {"status", "starts_at", "ends_at"}
    with pytest.raises(StateFileError) as info:
        parse_incident({"id": "sbg-power"}, origin="q", languages={"de"}, current=current)
    assert {p.field for p in info.value.problems} == {"title.de", "message.de"}


def test_an_incident_reads_back_from_its_json_unchanged():
    data = json.loads(BASE_JSON)["incidents"][0]
    incident = parse_incident(data, origin="state.json:3", languages=BOTH)
    again = type(incident).from_json(json.loads(json.dumps(incident.to_json())))
    assert again == incident and again.origin == "state.json:3"


def test_with_changes_merges_languages_into_a_table_and_replaces_a_plain_text():
    data = json.loads(BASE_JSON)["incidents"][0]
    incident = parse_incident({**data, "cause": "power"}, origin="q", languages=BOTH)
    changed = incident.with_changes(
        {"message": {"fr": "Réparé."}, "cause": {"en": "a feed"}, "status": "monitoring"}
    )
    assert changed.message == Localized({"en": "We are investigating.", "fr": "Réparé."})
    assert changed.cause == Localized({"en": "a feed"})
    assert changed.status == "monitoring" and incident.status == "investigating"


# --------------------------------------------------------------------------------------
# apply_changes


def copy_example(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_bytes((EXAMPLES / name).read_bytes())
    return path


def test_apply_changes_keeps_toml_comments_and_formatting(tmp_path):
    path = copy_example(tmp_path, "state.toml")
    path.chmod(0o640)
    before = path.read_text().split("\n")
    apply_changes(
        path,
        "sbg-power-2017-11-09",
        {
            "status": "monitoring",
            "message": {"fr": "La plupart des services sont rétablis."},
            "workaround": {
                "en": "Reboot from the control panel.",
                "fr": "Redémarrez depuis l'espace client.",
            },
            "next_update_at": datetime(2017, 11, 9, 13, 30, tzinfo=CET),
        },
    )
    after = path.read_text().split("\n")
    comment = "# Where we are: investigating -> identified -> monitoring -> resolved."
    unrelated = 'regions = ["SBG"]'
    assert after[before.index(comment)] == comment
    assert after[before.index(unrelated)] == unrelated
    assert after.count('status = "monitoring"') == 1
    assert "next_update_at = 2017-11-09T13:30:00+01:00" in after
    # The new key joins its incident, not the comments ahead of the next one.
    new = after.index(
        'workaround = { en = "Reboot from the control panel.", '
        'fr = "Redémarrez depuis l\'espace client." }'
    )
    assert new < after.index("[[incidents]]", after.index('status = "monitoring"'))
    assert after[new + 1].startswith("# Set these when it is over")
    assert len(after) == len(before) + 1
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert sorted(os.listdir(tmp_path)) == ["state.toml"]

    outage, maintenance = load_state(path, BOTH)
    assert outage.status == "monitoring"
    assert outage.message is not None
    assert outage.message.get("fr") == "La plupart des services sont rétablis."
    assert outage.message.get(
        "en",
    ).startswith("Power is back")  # other language kept
    assert outage.next_update_at == datetime(2017, 11, 9, 13, 30, tzinfo=CET)
    assert maintenance == load_state(EXAMPLES / "state.toml", BOTH)[1]


def test_apply_changes_plain_strings_removal_and_resolution(tmp_path):
    path = write(
        tmp_path,
        "state.toml",
        BASE_TOML.replace(
            'message = { en = "We are investigating.", fr = "Nous enquêtons." }',
            'message = "SBG is down"  # same text everywhere',
        ),
    )
    apply_changes(
        path,
        "sbg-power",
        {
            "message": {"en": "Back up", "fr": "Rétabli"},
            "status": "resolved",
            "resolved_at": datetime(2017, 11, 9, 17, 30, tzinfo=CET),
            "data_loss": False,
            "services": ("VPS", "Web hosting"),
            "severity": None,
        },
    )
    text = path.read_text()
    assert "# ops notes: keep this comment\n" in text
    assert 'message = { en = "Back up", fr = "Rétabli" }' in text
    assert "severity" not in text
    [incident] = load_state(path, BOTH)
    assert incident.status == "resolved" and incident.data_loss is False
    assert incident.severity == "major"  # the default, once removed
    assert incident.services == ("VPS", "Web hosting")
    assert incident.resolved_at == datetime(2017, 11, 9, 17, 30, tzinfo=CET)


def test_apply_changes_updates_json_in_order(tmp_path):
    path = copy_example(tmp_path, "state.json")
    apply_changes(
        path,
        "sbg-power-2017-11-09",
        {
            "status": "monitoring",
            "message": {"fr": "Presque tous les serveurs sont rétablis."},
            "next_update_at": datetime(2017, 11, 9, 13, 30, tzinfo=CET),
            "data_loss": False,
        },
    )
    text = path.read_text(encoding="utf-8")
    assert "rétablis" in text  # ensure_ascii=False
    assert text.startswith('{\n  "incidents": [\n    {\n      "id": ')
    data = json.loads(text)
    outage = data["incidents"][0]
    original = json.loads((EXAMPLES / "state.json").read_text())["incidents"][0]
    assert list(outage) == [*original, "data_loss"]
    assert outage["next_update_at"] == "2017-11-09T13:30:00+01:00"
    assert outage["message"]["en"] == original["message"]["en"]
    assert load_state(path, BOTH)[0].status == "monitoring"
    assert sorted(os.listdir(tmp_path)) == ["state.json"]


@pytest.mark.parametrize("name", ["state.toml", "state.json"])
@pytest.mark.parametrize(
    ("incident_id", "changes", "field", "fragment"),
    [
        ("sbg-power-2017-11-09", {"status": "fixed"}, "status", "unknown status 'fixed'"),
        (
            "sbg-power-2017-11-09",
            {"next_update_at": datetime(2017, 11, 9, 8)},
            "next_update_at",
            "has no UTC offset",
        ),
        ("sbg-power-2017-11-09", {"message": {"fr": ""}}, "message.fr", "empty text"),
        ("sbg-power-2017-11-09", {"statuss": "resolved"}, "statuss", "did you mean 'status'?"),
        ("sbg-power-2017-11-09", {"id": "other"}, "id", "cannot be changed"),
        ("sbg-power", {"status": "resolved"}, "id", "did you mean 'sbg-power-2017-11-09'?"),
    ],
)
def test_apply_changes_refuses_invalid_changes(
    tmp_path, name, incident_id, changes, field, fragment
):
    path = copy_example(tmp_path, name)
    before = path.read_bytes()
    with pytest.raises(StateFileError) as info:
        apply_changes(path, incident_id, changes, languages=BOTH)
    [problem] = info.value.problems
    assert (problem.incident_id, problem.field) == (incident_id, field)
    assert_named(problem, path, fragment)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == [name]


def test_apply_changes_does_not_overwrite_a_concurrent_edit(tmp_path, monkeypatch):
    path = copy_example(tmp_path, "state.toml")
    real_fsync = os.fsync
    edited = b"# edited by hand meanwhile\n" + path.read_bytes()

    def edit_then_fsync(fd):
        if not path.read_bytes().startswith(b"# edited"):
            path.write_bytes(edited)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", edit_then_fsync)
    with pytest.raises(StateFileError, match="changed while the update was prepared"):
        apply_changes(path, "sbg-power-2017-11-09", {"status": "monitoring"})
    assert path.read_bytes() == edited
    assert sorted(os.listdir(tmp_path)) == ["state.toml"]


def test_apply_changes_writes_through_a_symlink(tmp_path):
    real = copy_example(tmp_path, "state.toml")
    link = tmp_path / "current.toml"
    link.symlink_to(real)
    apply_changes(link, "sbg-power-2017-11-09", {"status": "monitoring"})
    assert link.is_symlink()
    assert load_state(real)[0].status == "monitoring"


# --------------------------------------------------------------------------------------
# Timelines

TIMELINE = """\
[[step]]
at = 2017-11-09T07:25:00+01:00

[[step.incidents]]
id = "sbg-power"
title = "Power outage"
status = "investigating"
started_at = 2017-11-09T07:23:00+01:00

[[step]]
at = 2017-11-09T08:10:00+01:00

[[step.incidents]]
id = "sbg-power"
title = "Power outage"
status = "identified"
started_at = 2017-11-09T07:23:00+01:00
"""


def test_timeline_problems_are_located(tmp_path):
    assert [i[0].status for _, i in load_timeline(write(tmp_path, "ok.toml", TIMELINE))] == [
        "investigating",
        "identified",
    ]

    bad_status = write(tmp_path, "status.toml", TIMELINE.replace('"identified"', '"found"'))
    [problem] = problems_of_timeline(bad_status)
    assert (problem.line, problem.incident_id, problem.field) == (16, "sbg-power", "status")
    assert_named(problem, bad_status, "unknown status 'found'")

    backwards = write(tmp_path, "order.toml", TIMELINE.replace("T08:10", "T07:00"))
    [problem] = problems_of_timeline(backwards)
    assert (problem.line, problem.incident_id, problem.field) == (11, None, "at")
    assert_named(problem, backwards, "step #2")
    assert "not after the previous step at line 2" in problem.message

    naive = write(
        tmp_path,
        "naive.toml",
        TIMELINE.replace("at = 2017-11-09T08:10:00+01:00", "at = 2017-11-09T08:10:00"),
    )
    [problem] = problems_of_timeline(naive)
    assert (problem.line, problem.field) == (11, "at")

    missing = write(
        tmp_path,
        "missing.toml",
        TIMELINE.replace("at = 2017-11-09T08:10:00+01:00\n", "when = 2017-11-09T08:10:00+01:00\n"),
    )
    problems = problems_of_timeline(missing)
    assert {(p.line, p.field) for p in problems} == {(11, "when"), (10, "at")}

    duplicate = write(
        tmp_path,
        "dup.toml",
        TIMELINE
        + TIMELINE.split("\n\n", 2)[1].replace("[[step.incidents]]", "\n[[step.incidents]]"),
    )
    problems = problems_of_timeline(duplicate)
    assert [(p.line, p.incident_id, p.field) for p in problems] == [(20, "sbg-power", "id")]


def problems_of_timeline(path: Path) -> list[Problem]:
    with pytest.raises(StateFileError) as info:
        load_timeline(path, BOTH)
    return info.value.problems


def test_apply_changes_with_dotted_keys_sub_tables_and_multiline_values(tmp_path):
    text = (
        '# c\r\n[[incidents]]\r\nid = "a"\r\nstatus = "investigating"\r\n'
        'started_at = 2017-11-09T07:23:00+01:00\r\ntitle.en = "T"\r\ntitle.fr = "T fr"\r\n'
        '\r\n[incidents.message]\r\nen = "m"\r\nfr = "m fr"\r\n\r\n# next\r\n'
        '[[incidents]]\r\nid = "b"\r\nstatus = "resolved"\r\n'
        'started_at = 2017-11-09T07:23:00+01:00\r\ntitle = """multi\r\nline"""\r\n\r\n'
    )
    path = tmp_path / "state.toml"
    path.write_bytes(text.encode())
    apply_changes(
        path,
        "a",
        {"title": {"fr": "Nouveau"}, "message": {"fr": "msg"}, "cause": "c"},
        languages=BOTH,
    )
    apply_changes(path, "b", {"message": "done"})
    expected = (
        text.replace('title.fr = "T fr"', 'title.fr = "Nouveau"\r\ncause = "c"')
        .replace('fr = "m fr"', 'fr = "msg"')
        .replace('line"""\r\n', 'line"""\r\nmessage = "done"\r\n')
    )
    assert path.read_bytes().decode() == expected
    a, b = load_state(path, BOTH)
    assert a.title == Localized({"en": "T", "fr": "Nouveau"}) and b.title.get("fr") == "multi\nline"


# --------------------------------------------------------------------------------------
# Names per language and the expected recovery time


def test_services_and_regions_take_a_list_per_language_like_the_texts(tmp_path):
    text = BASE_TOML.replace(
        'services = ["VPS"]',
        'services = { en = ["Dedicated servers", "VPS"], fr = ["Serveurs dédiés", "VPS"] }\n'
        "eta = 2017-11-09T14:00:00+01:00",
    )
    [incident] = load_state(write(tmp_path, "state.toml", text), BOTH)
    assert incident.services.get("fr") == ("Serveurs dédiés", "VPS")
    assert incident.services.get("fr-CA") == ("Serveurs dédiés", "VPS")
    assert incident.services.get("en") == ("Dedicated servers", "VPS")
    # As a whole, every name once: what channel filters match on.
    assert set(incident.services) == {"Dedicated servers", "Serveurs dédiés", "VPS"}
    assert incident.eta == datetime(2017, 11, 9, 14, 0, tzinfo=CET)
    again = type(incident).from_json(json.loads(json.dumps(incident.to_json())))
    assert again.services.by_language == incident.services.by_language
    assert again.eta == incident.eta
    # A plain list still serves every language.
    [plain] = load_state(write(tmp_path, "plain.toml", BASE_TOML), BOTH)
    assert plain.services.get("fr") == ("VPS",) and plain.to_json()["services"] == ["VPS"]


@pytest.mark.parametrize(
    ("written", "field", "fragment"),
    [
        (
            'services = { en = ["VPS"] }',
            "services.fr",
            "no 'fr' names, and a channel posts in 'fr'",
        ),
        ('services = { en = ["VPS", 3], fr = ["VPS"] }', "services.en", "item 2 is an integer"),
        ("services = {}", "services", "no names in any language"),
        ('services = { en = "VPS", fr = ["VPS"] }', "services.en", "got a string"),
    ],
)
def test_names_per_language_problems_are_located(tmp_path, written, field, fragment):
    path = write(tmp_path, "state.toml", BASE_TOML.replace('services = ["VPS"]', written))
    (problem,) = problems_of(path)
    assert problem.field == field and problem.line == 7
    assert_named(problem, path, fragment)


def test_an_event_may_give_names_per_language_and_they_merge_by_language():
    data = json.loads(BASE_JSON)["incidents"][0]
    current = parse_incident(
        {**data, "services": {"en": ["Dedicated servers"], "fr": ["Serveurs dédiés"]}},
        origin="queue:1",
        languages=BOTH,
    )
    updated = current.with_changes({"services": {"fr": ["Serveurs dédiés", "VPS"]}})
    assert updated.services.get("fr") == ("Serveurs dédiés", "VPS")
    assert updated.services.get("en") == ("Dedicated servers",)
    assert current.with_changes({"services": ["VPS"]}).services.get("fr") == ("VPS",)


def test_apply_changes_writes_names_per_language(tmp_path):
    path = write(tmp_path, "state.toml", BASE_TOML)
    apply_changes(
        path, "sbg-power", {"services": {"en": ["Web hosting"], "fr": ["Hébergement web"]}}
    )
    [incident] = load_state(path, BOTH)
    assert incident.services.get("fr") == ("Hébergement web",)
