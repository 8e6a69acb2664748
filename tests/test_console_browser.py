"""The drafting console in a real browser: Playwright driving Debian's Chromium.

One browser for the module; each test gets its own console (a copy of the shipped example)
served by uvicorn on a free loopback port. Screenshots go to a temporary directory whose
path is printed (``-s``) and written to ``console-screenshots.txt`` in pytest's tmp dir.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from console_support import TOKEN, console_config, shipped_example
from support import journal_posts, wait_for

from broadcaster.config import load_config
from broadcaster.statefile import load_state
from broadcaster.web.console import create_app
from broadcaster.web.server import ServerThread

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SBG = "sbg-power-2017-11-09"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1366, "height": 900}


def _need_browser() -> Any:
    reason = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "the playwright package is not installed"
    if reason is None and not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (apt-get install chromium)"
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests cannot run in CI: {reason}")
        pytest.skip(reason)
    return sync_playwright


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_playwright = _need_browser()
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield chromium
        chromium.close()


class Console:
    def __init__(self, tmp: Path, *, shipped: bool = False) -> None:
        self.config_path = shipped_example(tmp) if shipped else console_config(tmp)
        self.config = load_config(self.config_path)
        app = create_app(self.config, self.config.console.require_token(self.config.path))
        self.server = ServerThread(app).start()
        self.url = self.server.url

    def login(self, browser: Any, name: str = "Ana Lead", **context: Any) -> Any:
        page = browser.new_context(**context).new_page()
        page.goto(self.url + "/")
        page.get_by_test_id("login-token").fill(TOKEN)
        page.get_by_test_id("login-name").fill(name)
        page.get_by_test_id("login-submit").click()
        page.wait_for_url(self.url + "/")
        return page

    def incidents(self) -> dict[str, Any]:
        return {i.id: i for i in load_state(self.config.state_file, {"en", "fr"})}


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    c = Console(tmp_path)
    yield c
    c.server.stop()


@pytest.fixture
def shipped(tmp_path: Path) -> Iterator[Console]:
    """The console on the shipped example: config.example.toml and examples/state.toml."""
    c = Console(tmp_path, shipped=True)
    yield c
    c.server.stop()


def preview_updated(page: Any, after: int) -> int:
    """Wait for a preview answer newer than ``after``; its sequence number."""
    state = page.get_by_test_id("preview-state")
    page.wait_for_function(
        "n => Number(document.getElementById('preview-state').dataset.seq || 0) > n", arg=after
    )
    return int(state.get_attribute("data-seq"))


def test_login_then_live_preview_per_channel_while_typing(shipped: Console, browser: Any) -> None:
    page = shipped.login(browser)
    page.get_by_test_id(f"incident-{SBG}").click()
    seq = preview_updated(page, 0)
    x_en = page.get_by_test_id("preview-x-en")
    assert "Power is back on one feed" in x_en.inner_text()
    assert "Le courant est rétabli" in page.get_by_test_id("preview-mastodon-fr").inner_text()
    assert "Le courant est rétabli" in page.get_by_test_id("preview-x-fr").inner_text()
    message = page.get_by_test_id("field-message-en")
    message.fill("")
    latencies = []
    for char in "Racks up":
        message.press(char if char != " " else "Space")
        seq = preview_updated(page, seq)
        latencies.append(
            float(page.get_by_test_id("preview-state").get_attribute("data-latency-ms"))
        )
    assert "Racks up" in x_en.inner_text()
    assert "Racks up" not in page.get_by_test_id("preview-mastodon-fr").inner_text()
    assert (
        "/280" in x_en.inner_text()
        and "/500" in page.get_by_test_id("preview-mastodon-fr").inner_text()
    )
    assert "promises next update by" in x_en.inner_text()
    median = statistics.median(latencies)
    print(
        f"\nkeystroke to updated preview: median {median:.0f} ms over {len(latencies)} keys "
        f"(debounce 120 ms included), max {max(latencies):.0f} ms"
    )
    assert median < 1000


def test_publish_reaches_a_running_dry_run_daemons_journal(
    console: Console, browser: Any, tmp_path: Path
) -> None:
    journal = tmp_path / "data" / "dry-run.jsonl"
    log = (tmp_path / "daemon.log").open("w")
    daemon = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "broadcaster",
            "run",
            "--dry-run",
            "--config",
            str(console.config_path),
        ],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(
            lambda: (
                {p["channel"] for p in journal_posts(journal) if p["incident_id"] == SBG}
                == {"x-en", "mastodon-fr"}
            ),
            "the daemon's opening posts",
            timeout=20,
        )
        page = console.login(browser)
        page.get_by_test_id(f"incident-{SBG}").click()
        page.get_by_test_id("field-status").select_option("monitoring")
        page.get_by_test_id("field-message-en").fill("All racks are back; we are watching.")
        page.get_by_test_id("field-message-fr").fill(
            "Toutes les baies sont revenues ; nous surveillons."
        )
        page.get_by_test_id("publish").click()
        saved = page.get_by_test_id("saved")
        assert "status" in saved.inner_text() and "message" in saved.inner_text()

        def update_channels() -> set[str]:
            texts = ("watching", "surveillons")
            return {
                p["channel"] for p in journal_posts(journal) if any(t in p["text"] for t in texts)
            }

        wait_for(
            lambda: update_channels() == {"x-en", "mastodon-fr"},
            "the published update on both channels of the daemon's journal",
            timeout=20,
        )
    finally:
        daemon.terminate()
        daemon.wait(timeout=20)
        log.close()


def test_two_editors_never_overwrite_each_other(console: Console, browser: Any) -> None:
    ana = console.login(browser, "Ana")
    bob = console.login(browser, "Bob")
    for page in (ana, bob):
        page.goto(f"{console.url}/incidents/{SBG}")
    ana.get_by_test_id("field-status").select_option("monitoring")
    ana.get_by_test_id("field-message-fr").fill("Le texte d'Ana.")
    ana.get_by_test_id("publish").click()
    ana.get_by_test_id("saved").wait_for()
    bob.get_by_test_id("field-message-en").fill("Bob's text")
    bob.get_by_test_id("publish").click()
    conflict = bob.get_by_test_id("conflict")
    assert "status: identified → monitoring" in conflict.inner_text()
    assert "message (fr): " in conflict.inner_text()
    assert bob.get_by_test_id("field-message-en").input_value() == "Bob's text"
    incident = console.incidents()[SBG]
    assert incident.status == "monitoring" and "Bob" not in incident.message.get("en")
    # Bob publishes again as the conflict page invites him to: Ana's changes stay.
    bob.get_by_test_id("publish").click()
    bob.get_by_test_id("saved").wait_for()
    incident = console.incidents()[SBG]
    assert incident.status == "monitoring" and incident.message.get("fr") == "Le texte d'Ana."
    assert incident.message.get("en") == "Bob's text"


def test_bad_input_is_shown_at_its_field_while_typing_and_nothing_is_saved(
    console: Console, browser: Any
) -> None:
    before = console.config.state_file.read_bytes()
    page = console.login(browser)
    page.goto(f"{console.url}/incidents/{SBG}")
    seq = preview_updated(page, 0)
    page.get_by_test_id("field-next_update_at").fill("half past ten")
    page.get_by_test_id("field-title-fr").fill("")
    preview_updated(page, seq)
    assert (
        "cannot read 'half past ten' as a time"
        in page.get_by_test_id("error-next_update_at").inner_text()
    )
    assert "fr" in page.get_by_test_id("error-title").inner_text()
    page.get_by_test_id("publish").click()
    assert "cannot read" in page.get_by_test_id("error-next_update_at").inner_text()
    assert console.config.state_file.read_bytes() == before


def test_a_new_incident_from_the_list_with_hostile_text_shown_as_text(
    console: Console, browser: Any
) -> None:
    page = console.login(browser)
    page.get_by_test_id("new-incident").click()
    hostile = '<img src=x onerror="window.pwned=1"><script>window.pwned=1</script>'
    page.get_by_test_id("field-id").fill("rbx-network")
    page.get_by_test_id("field-title-en").fill("Network down " + hostile)
    page.get_by_test_id("field-title-fr").fill("Réseau en panne")
    page.get_by_test_id("field-message-en").fill("Looking into it")
    page.get_by_test_id("field-message-fr").fill("Nous cherchons")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=preview-x-en]').innerText.includes('onerror')"
    )
    assert hostile in page.get_by_test_id("preview-x-en").inner_text()
    page.get_by_test_id("publish").click()
    assert "Network down <img" in page.get_by_test_id("saved").inner_text()
    page.wait_for_url(f"{console.url}/incidents/rbx-network")  # a reload shows it, posts nothing
    assert page.evaluate("() => window.pwned") is None
    page.goto(console.url + "/")
    assert "Network down <img" in page.get_by_test_id("incident-rbx-network").inner_text()
    assert page.evaluate("() => window.pwned") is None
    assert console.incidents()["rbx-network"].title.get("en") == "Network down " + hostile


def test_requests_without_the_csrf_token_or_session_change_nothing(
    console: Console, browser: Any
) -> None:
    before = console.config.state_file.read_bytes()
    page = console.login(browser)
    page.goto(f"{console.url}/incidents/{SBG}")
    status = page.evaluate(
        """async id => {
            const body = new URLSearchParams(
                {status: "resolved", "title-en": "x", "title-fr": "x"});
            const r = await fetch("/incidents/" + id, {method: "POST", body});
            const p = await fetch("/preview", {method: "POST", body: "{}",
                                               headers: {"Content-Type": "application/json"}});
            return [r.status, p.status];
        }""",
        SBG,
    )
    assert status == [403, 403]
    anonymous = browser.new_context().new_page()
    anonymous.goto(f"{console.url}/incidents/{SBG}")
    assert anonymous.url.endswith("/login")
    assert console.config.state_file.read_bytes() == before


def test_screenshots_of_the_main_pages_at_phone_and_desktop_widths(
    shipped: Console, browser: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The pages README shows (``CONSOLE_SCREENSHOTS=docs/screenshots`` refreshes them)."""
    shots = tmp_path_factory.mktemp("console-screenshots")
    for label, viewport, scale in (("phone", PHONE, 2), ("desktop", DESKTOP, 1)):
        context = browser.new_context(viewport=viewport, device_scale_factor=scale)
        page = context.new_page()
        page.goto(shipped.url + "/login")
        page.screenshot(path=shots / f"login-{label}.png", full_page=True)
        page.get_by_test_id("login-token").fill(TOKEN)
        page.get_by_test_id("login-name").fill("Ana Lead")
        page.get_by_test_id("login-submit").click()
        page.wait_for_url(shipped.url + "/")
        page.screenshot(path=shots / f"list-{label}.png", full_page=True)
        boxes = page.evaluate(
            "() => Array.from(document.querySelectorAll('header.top > *'),"
            " e => [e.getBoundingClientRect().top, e.getBoundingClientRect().bottom])"
        )
        one_line = max(top for top, _ in boxes) < min(bottom for _, bottom in boxes)
        assert one_line, f"the header wraps onto two lines at {label} width"
        page.get_by_test_id(f"incident-{SBG}").click()
        preview_updated(page, 0)
        page.screenshot(path=shots / f"edit-{label}.png")
        if label == "phone":
            page.evaluate("() => document.getElementById('previews').scrollIntoView()")
            page.screenshot(path=shots / f"edit-preview-{label}.png")
        overflow = page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the edit page scrolls sideways at {label} width"
        context.close()
    print(f"\nscreenshots: {shots}")
    keep = os.environ.get("CONSOLE_SCREENSHOTS")
    if keep:
        shutil.copytree(shots, keep, dirs_exist_ok=True)
    assert len(list(shots.glob("*.png"))) == 7
