"""Fixtures for every test module.

The X / Mastodon sandbox fixtures (``x_sandbox``, ``mastodon_sandbox``, ``no_real_network``,
``make_tweepy``...) live in ``sandbox_fixtures.py`` and are loaded here once, so any test
module can ask for them. Plain builders and helpers are in ``support.py``.
"""

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import ROOT

pytest_plugins = ["sandbox_fixtures", "pg_server"]


@pytest.fixture(autouse=True)
def _only_loopback(no_real_network: None) -> None:
    """Every test, not only the platform ones: resolving any host but loopback fails, so
    no test can reach a real X or Mastodon host even through a rebasing bug. (Subprocess
    daemons get configs that point at the loopback sandboxes.)"""


@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Iterator[None]:
    """A test that runs the CLI configures logging onto the stderr pytest captured for it;
    put the root logger back, so a worker thread still winding down never writes to a
    closed stream in a later test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A copy of the shipped example (config, templates, examples), so a test may break
    and edit it."""
    shutil.copytree(ROOT / "message_templates", tmp_path / "message_templates")
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    shutil.copy(ROOT / "config.example.toml", tmp_path / "config.toml")
    return tmp_path
