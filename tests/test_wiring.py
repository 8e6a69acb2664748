"""``app.py`` is the one composition point: no other module of the package builds the
components it wires (the sandbox servers, test doubles of the platforms, are exempt)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "broadcaster"

# Each component, and where it is defined (which may build its own, e.g. a working copy:
# every store backend makes its copies in SQLite's memory).
COMPONENTS = {
    "Renderer": "render.py",
    "Store": "store/",
    "PostgresStore": "store/",
    "Editor": "editor.py",
    "Delivery": "delivery.py",
    "ChannelWorker": "delivery.py",
    "Daemon": "daemon.py",
    "ServiceShell": "service.py",
    "Metrics": "metrics.py",
    "Notifier": "notify.py",
}


def constructions() -> set[tuple[str, str]]:
    """(module, component) for every call that builds a component outside app.py."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        module = path.relative_to(PACKAGE).as_posix()
        if module == "app.py" or module.startswith("sandbox/"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                name = node.func.id
                if name in COMPONENTS and not module.startswith(COMPONENTS[name]):
                    found.add((module, name))
    return found


def test_only_app_py_builds_the_components() -> None:
    assert constructions() == set()
