"""An incident field is spelled out in at most two modules of the package: its declaration in
``model.py``, and at most one module that must name it for a policy of its own (advice's
warnings, the thread-cap check's blame, the console's one-line title...). Everything else
reaches a field through the schema (``INCIDENT_FIELDS``, ``ID_FIELD``, ``opened``...), so
adding a field is one declaration plus templates and docs.

"Spelled out" is any string constant equal to a field's name (a dict key, a subscript, a
``.get``/``getattr`` argument, a comparison, an argument naming the field), and a keyword
of ``dict(...)`` or ``.update(...)``; docstrings aside. Names the package gives to other
things (a post's ``kind``, a platform's JSON ``id``, a config key ``url``) are set aside
below, each by module and function with the reason: a new hit fails until judged.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import fields
from pathlib import Path

from test_imports import PACKAGE, import_graph, module_name

from broadcaster.model import Incident

FIELDS = {f.name for f in fields(Incident)}

# The fake X and Mastodon servers: they speak those platforms' JSON ("id", "title",
# "status", "url", "message") and import nothing of the package outside their own.
SANDBOX = "broadcaster.sandbox"

# (module, function or "<module>", name): why that spelling is not the incident's field.
OTHER_MEANINGS: dict[tuple[str, str, str], str] = {
    # A post's own attributes, in the dry-run journal, the rehearsal's JSON and the console's
    # preview: its kind (opened, update...), its promise, the platform's id for it.
    ("broadcaster.channels.dryrun", "DryRunChannel.publish", "id"): "the published post's id",
    ("broadcaster.channels.dryrun", "DryRunChannel.publish", "kind"): "the post's kind",
    ("broadcaster.channels.dryrun", "DryRunChannel.publish", "next_update_at"): "post promise",
    ("broadcaster.channels.dryrun", "DryRunJournal.__init__", "id"): "a journal line's post id",
    ("broadcaster.channels.dryrun", "DryRunJournal.append", "id"): "a journal line's post id",
    ("broadcaster.channels.dryrun", "_pretty", "kind"): "the post's kind",
    ("broadcaster.rehearsal", "Shown.to_json", "kind"): "the post's kind",
    ("broadcaster.rehearsal", "Shown.to_json", "next_update_at"): "the post's promise",
    ("broadcaster.cli", "_text_posts", "kind"): "the post's kind (Shown.to_json)",
    ("broadcaster.web.console.workspace", "Workspace.preview", "kind"): "the post's kind",
    ("broadcaster.web.console.workspace", "Workspace.preview", "next_update_at"): "post promise",
    ("broadcaster.store.rows", "post_from_row", "kind"): "the outbox row's column",
    ("broadcaster.store.postgres_schema", "<module>", "id"): "a table's column (migration)",
    ("broadcaster.store.postgres_schema", "<module>", "kind"): "a table's column (migration)",
    # The platforms' answers, read by the channels.
    ("broadcaster.channels.mastodon", "MastodonChannel.find_published", "id"): "status JSON",
    ("broadcaster.channels.mastodon", "MastodonChannel.find_published", "url"): "status JSON",
    ("broadcaster.channels.mastodon", "MastodonChannel.publish", "id"): "status JSON",
    ("broadcaster.channels.mastodon", "MastodonChannel.publish", "url"): "status JSON",
    ("broadcaster.channels.x", "XChannel.find_published", "id"): "tweet JSON",
    ("broadcaster.channels.x", "XChannel.publish", "id"): "tweet JSON",
    ("broadcaster.channels.x", "XChannel.user_id", "id"): "user JSON",
    ("broadcaster.channels.x", "_detail", "message"): "X's error JSON",
    # HTTP answers and log records: their own documented keys.
    ("broadcaster.web.intake", "create_app._event", "id"): "the 202 answer's incident id",
    ("broadcaster.web.intake", "create_app._event", "status"): 'the 202 answer: "accepted"',
    ("broadcaster.web.intake", "create_app._event", "message"): "an error answer's message",
    ("broadcaster.web.intake", "refusal", "message"): "an error answer's message",
    ("broadcaster.web.intake", "_Counted.__call__.counted", "status"): "the ASGI HTTP status",
    ("broadcaster.web.server", "_raw_response", "message"): "an error answer's message",
    ("broadcaster.health", "Health.to_json", "status"): "/healthz's status (ok, degraded...)",
    ("broadcaster.logs", "_Json.format", "message"): "a JSON log record's message",
    ("broadcaster.problems", "Problem.__post_init__", "message"): "a Problem's own attribute",
    ("broadcaster.sources.redis", "RedisStreamSource._dead_letter", "id"): "the stream entry id",
    # The CLI's `status` command (its name) and its JSON document's own keys.
    ("broadcaster.cli", "<module>", "status"): "the `status` command in COMMANDS",
    ("broadcaster.cli", "_parser", "status"): "the `status` subcommand",
    ("broadcaster.cli", "cmd_status", "id"): "`status --format json`'s documented keys",
    ("broadcaster.cli", "cmd_status", "status"): "`status --format json`'s documented keys",
    # Config keys: a channel's filters, the store's and Redis' URLs.
    ("broadcaster.config", "<module>", "services"): "[channels.NAME] services filter key",
    ("broadcaster.config", "<module>", "regions"): "[channels.NAME] regions filter key",
    ("broadcaster.config", "<module>", "url"): "[store] / [intake.redis] url keys",
    ("broadcaster.config", "_channel", "services"): "[channels.NAME] services filter key",
    ("broadcaster.config", "_channel", "regions"): "[channels.NAME] regions filter key",
    ("broadcaster.config", "_intake", "url"): "[intake.redis] url",
    ("broadcaster.config", "_store", "url"): "[store] url",
    # Text machinery.
    ("broadcaster.textfit", "_XWeigher.units", "url"): "a twitter-text URL entity",
    ("broadcaster.i18n", "_typography_sub", "url"): "a regular expression's group",
}


def spelled_out(path: Path) -> list[tuple[str, str]]:
    """(function or "<module>", field name) for each spelling of a field in ``path``."""
    found: list[tuple[str, str]] = []

    def visit(node: ast.AST, scope: str) -> None:
        body = getattr(node, "body", None)
        doc = None
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            first = body[0] if body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                doc = first
        for child in ast.iter_child_nodes(node):
            if child is doc:
                continue
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                visit(child, f"{scope}.{child.name}" if scope else child.name)
                continue
            if isinstance(child, ast.Constant) and child.value in FIELDS:
                found.append((scope or "<module>", child.value))
            if isinstance(child, ast.Call):
                func = child.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name in ("dict", "update"):
                    keys = [k.arg for k in child.keywords if k.arg in FIELDS]
                    found.extend((scope or "<module>", key) for key in keys if key)
            visit(child, scope)

    visit(ast.parse(path.read_text(encoding="utf-8")), "")
    return found


def test_each_incident_field_is_spelled_out_in_at_most_two_modules() -> None:
    modules: dict[str, set[str]] = defaultdict(lambda: {"broadcaster.model"})
    used: set[tuple[str, str, str]] = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        if module == SANDBOX or module.startswith(SANDBOX + "."):
            continue
        for scope, name in spelled_out(path):
            if (module, scope, name) in OTHER_MEANINGS:
                used.add((module, scope, name))
            else:
                modules[name].add(module)
    too_many = {name: sorted(m) for name, m in modules.items() if len(m) > 2}
    assert too_many == {}, f"fields spelled out in more than two modules: {too_many}"
    stale = sorted(set(OTHER_MEANINGS) - used)
    assert stale == [], f"set aside but no longer found (remove them): {stale}"


def test_the_sandbox_set_aside_imports_nothing_of_the_package_outside_itself() -> None:
    graph = import_graph()
    outside = {
        module: sorted(m for m in imports if not m.startswith(SANDBOX))
        for module, imports in graph.items()
        if module.startswith(SANDBOX)
    }
    assert {m: i for m, i in outside.items() if i} == {}
