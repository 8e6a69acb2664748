"""A console on a copy of the shipped example, and a logged-in HTTP client for it."""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path
from typing import Any

from support import ROOT

TOKEN = "console-test-token-0123456789"


def console_config(tmp: Path, *, state: str = "state.toml", extra: str = "") -> Path:
    """The shipped example's incidents, posted in English and French by dry-run channels."""
    shutil.copy(ROOT / "examples" / state, tmp / state)
    config = tmp / "config.toml"
    config.write_text(
        f"""
[broadcaster]
state_file = "{state}"
data_dir = "data"
templates_dir = "{ROOT / "message_templates"}"
timezone = "Europe/Paris"
poll_interval = "50ms"

[channels.x-en]
platform = "x"
language = "en"
consumer_key = "${{UNSET_FOR_CONSOLE}}"

[channels.mastodon-fr]
platform = "mastodon"
language = "fr"
api_base_url = "https://mastodon.invalid"

[console]
token = "{TOKEN}"
{extra}
"""
    )
    return config


def shipped_example(tmp: Path) -> Path:
    """config.example.toml as shipped (four channels, en and fr) with a console token, on a
    copy of examples/ so the console can write its state file."""
    shutil.copytree(ROOT / "examples", tmp / "examples")
    (tmp / "message_templates").symlink_to(ROOT / "message_templates")
    config = tmp / "config.toml"
    text = (ROOT / "config.example.toml").read_text()
    config.write_text(text + f'\n[console]\ntoken = "{TOKEN}"\n')
    return config


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, "the page has no CSRF token"
    return match.group(1)


def form_of(page: str) -> dict[str, str]:
    """The incident form's fields as the browser would submit them."""
    form = re.search(r'<form method="post" id="incident-form".*?</form>', page, re.S)
    assert form, "no incident form on the page"
    text = form.group(0)
    values = {
        n: html.unescape(v)
        for n, v in re.findall(r'<input[^>]*name="([^"]+)" value="([^"]*)"', text)
    }
    for m in re.finditer(r'<textarea name="([^"]+)"[^>]*>(.*?)</textarea>', text, re.S):
        values[m.group(1)] = html.unescape(m.group(2))
    for m in re.finditer(r'<select name="([^"]+)".*?</select>', text, re.S):
        chosen = re.search(r'<option value="([^"]*)" selected', m.group(0))
        values[m.group(1)] = html.unescape(chosen.group(1)) if chosen else ""
    return values


def login(client: Any, name: str = "Ana Lead", token: str = TOKEN) -> Any:
    page = client.get("/login")
    return client.post(
        "/login",
        data={"csrf": csrf_of(page.text), "token": token, "name": name},
        follow_redirects=False,
    )
