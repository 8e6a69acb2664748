"""Issue 3, "Real platforms": the daemon's delivery against local X and Mastodon servers.

Everything here goes through the real tweepy and Mastodon.py clients, over HTTP, to the
sandboxes of ``broadcaster.sandbox`` on loopback: no client library is mocked and no real
host is reachable. Most tests drive the app in-process (``app.build`` + the editor +
the delivery threads) for speed; the kill -9 test runs the daemon as a subprocess talking
to sandboxes that live in this test process.

What the sandbox saw is compared with what the store recorded: every sent post exactly
once on its account (Mastodon: by Idempotency-Key; X, which has none: by id and text),
each incident one reply chain per channel, in planned order.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from support import ROOT, wait_for

from broadcaster.app import App, build
from broadcaster.channels.base import PublishRequest, RateLimited, TransientError
from broadcaster.channels.x import XChannel
from broadcaster.config import load_config
from broadcaster.delivery import Backoff
from broadcaster.model import Incident, Localized, OutboxPost, PostKind, PostState
from broadcaster.sandbox import (
    Faults,
    MastodonAccount,
    MastodonSandbox,
    Post,
    RequestRecord,
    XAccount,
    XSandbox,
    status_length,
)
from broadcaster.sandbox.http import Request, Response, SandboxServer
from broadcaster.store import ChannelState, Store
from broadcaster.textfit import rule_for

X_EN = XAccount(
    consumer_key="status-app-key",
    consumer_secret="status-app-secret",
    access_token="1600000000000000001-statusentoken",
    access_token_secret="status-en-token-secret",
    user_id="1600000000000000001",
    username="status_en",
)
X_FR = replace(
    X_EN,
    access_token="1600000000000000002-statusfrtoken",
    access_token_secret="status-fr-token-secret",
    user_id="1600000000000000002",
    username="statut_fr",
)
M_EN = MastodonAccount(access_token="mastodon-en-token", username="status", id="110000000000000001")
M_FR = MastodonAccount(access_token="mastodon-fr-token", username="statut", id="110000000000000002")

# Fast retries: the faults below would otherwise cost seconds of backoff per post.
FAST = Backoff(base=0.01, cap=0.2, unhealthy_retry=0.2)

STARTED = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
URL = "https://status.example.com/incidents/sbg-power"
LONG_EN = (
    "Both electrical feeds of the Strasbourg site were lost at 07:23 and the backup "
    "generators did not start. Every server in rooms SBG1 to SBG4 is powered off; we are "
    "bringing power back room by room and will restart the racks as soon as it is stable."
)
LONG_FR = (
    "Le site de Strasbourg a perdu ses deux arrivées électriques à 7 h 23 et les groupes "
    "électrogènes n'ont pas démarré. Tous les serveurs des salles SBG1 à SBG4 sont éteints ; "
    "nous rétablissons le courant salle par salle et redémarrerons les baies dès qu'il sera "
    "stable."
)


# -- helpers ----------------------------------------------------------------------------


def incident(
    incident_id: str = "sbg-power",
    status: str = "investigating",
    en: str = "Power is lost in SBG.",
    fr: str = "Le courant est coupé à SBG.",
    **fields: Any,
) -> Incident:
    return Incident(
        id=incident_id,
        title=Localized({"en": f"Power outage ({incident_id})", "fr": f"Coupure ({incident_id})"}),
        status=status,
        started_at=STARTED,
        severity="critical",
        services=("VPS",),
        regions=("SBG",),
        message=Localized({"en": en, "fr": fr}),
        url=URL,
        **fields,
    )


@dataclass(frozen=True)
class Account:
    """One channel's account on one sandbox."""

    name: str  # the channel name, e.g. "x-en"
    server: XSandbox | MastodonSandbox
    account: XAccount | MastodonAccount
    options: dict[str, Any] = field(default_factory=dict)  # extra channel keys

    @property
    def username(self) -> str:
        return self.account.username

    def posts(self) -> list[Post]:
        return [p for p in self.server.posts() if p.account == self.username]


def _toml(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str | bool) else str(value)


def channel_toml(a: Account) -> str:
    keys: dict[str, Any] = {
        "platform": a.server.platform,
        "language": a.name.rsplit("-", 1)[1],
        "api_base_url": a.options.get("api_base_url") or a.server.base_url,
        "timeout": "1s",
    }
    if isinstance(a.account, XAccount):
        keys |= {
            "consumer_key": a.account.consumer_key,
            "consumer_secret": a.account.consumer_secret,
            "access_token": a.account.access_token,
            "access_token_secret": a.account.access_token_secret,
        }
    else:
        keys["access_token"] = a.account.access_token
    keys |= a.options
    return f"[channels.{a.name}]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in keys.items())


def write_config(tmp: Path, accounts: Sequence[Account], *, cadence: str = "1h") -> Path:
    path = tmp / "config.toml"
    path.write_text(
        f"""
[broadcaster]
state_file = "state.toml"
data_dir = "data"
templates_dir = {json.dumps(str(ROOT / "message_templates"))}
timezone = "Europe/Paris"
poll_interval = "100ms"

[cadence]
investigating = "{cadence}"
identified = "{cadence}"
monitoring = "{cadence}"
long_incident_interval = "{cadence}"

"""
        + "\n".join(channel_toml(a) for a in accounts)
    )
    return path


class Harness:
    """The app wired as the daemon wires it, driven by hand: ingest, plan, deliver."""

    def __init__(self, tmp: Path, accounts: Sequence[Account], *, backoff: Backoff = FAST):
        self.config_path = write_config(tmp, accounts)
        self.backoff = backoff
        self._app: App | None = None

    @property
    def app(self) -> App:
        assert self._app is not None, "not started"
        return self._app

    @property
    def store(self) -> Store:
        return self.app.store

    def start(self) -> Harness:
        self._app = build(load_config(self.config_path), dry_run=False, backoff=self.backoff)
        self.app.delivery.start()
        return self

    def stop(self) -> None:
        if self._app is not None:
            self._app.close()
            self._app = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def publish(self, *incidents: Incident) -> None:
        """What the daemon does when the state file changes: record, plan, wake delivery."""
        now = datetime.now(UTC)
        self.app.editor.ingest(incidents, now)
        self.app.editor.run(now)
        self.app.delivery.wake()

    def undelivered(self, channel: str | None = None) -> list[OutboxPost]:
        return self.store.posts(channel=channel, states=(PostState.PENDING, PostState.SENDING))

    def settle(self, timeout: float = 10.0, channel: str | None = None) -> None:
        wait_for(lambda: not self.undelivered(channel), "every post to be delivered", timeout)

    def channel_state(self, channel: str) -> ChannelState:
        return self.store.channel_state(channel)

    def status_json(self) -> dict[str, Any]:
        """``broadcaster status --format json``, as ops would run it next to the daemon."""
        command = ["status", "--format", "json", "--config", str(self.config_path)]
        result = subprocess.run(
            [sys.executable, "-m", "broadcaster", *command],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return json.loads(result.stdout)


@pytest.fixture
def servers() -> Iterator[Callable[..., Any]]:
    """``servers(XSandbox, [accounts], **options)``: started now, stopped after the test."""
    started: list[SandboxServer] = []

    def make(kind: type[SandboxServer], accounts: Sequence[Any], **options: Any) -> Any:
        if issubclass(kind, XSandbox):
            options.setdefault("daily_post_limit", 100_000)
        server = kind(accounts=accounts, faults=Faults(seed=len(started) + 1), **options)
        started.append(server.start())
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def harness(tmp_path: Path, no_real_network: None) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(accounts: Sequence[Account], **options: Any) -> Harness:
        made.append(Harness(tmp_path, accounts, **options).start())
        return made[-1]

    yield make
    for h in made:
        h.stop()


def check_threads(store: Store, a: Account) -> list[OutboxPost]:
    """What ``a``'s account holds is exactly the channel's sent posts, each once, as one reply
    chain per incident, published in the order they were planned. Returns the sent posts."""
    sent = store.posts(channel=a.name, states=(PostState.SENT,))
    remote = {p.id: p for p in a.posts()}
    ids = [p.remote_id for p in sent]
    assert len(ids) == len(set(ids)), f"{a.name}: two outbox posts adopted one remote post"
    assert set(ids) == set(remote), f"{a.name}: the platform and the store disagree"
    assert [int(i) for i in ids] == sorted(int(i) for i in ids), f"{a.name}: out of order"
    published = [remote[i].text for i in ids]
    assert len(set(published)) == len(published), f"{a.name}: the same text twice"
    parents: dict[str, str] = {}  # incident → remote id of the last post of its thread
    for post in sent:
        got = remote[post.remote_id]
        assert got.text == post.text, post.key
        assert got.in_reply_to == parents.get(post.incident_id), f"{post.key}: wrong parent"
        parents[post.incident_id] = got.id
        if isinstance(a.account, MastodonAccount):
            assert got.idempotency_key == post.key
            assert got.language == post.language
    return sent


def kinds(posts: Sequence[OutboxPost]) -> list[str]:
    return [f"{p.kind.value}{'' if p.parts == 1 else f'.{p.part}'}" for p in posts]


# -- 1. one reply chain per platform and language ----------------------------------------


def four_channels(servers: Callable[..., Any]) -> list[Account]:
    """English and French accounts side by side on one X and one Mastodon server."""
    x = servers(XSandbox, [X_EN, X_FR])
    m = servers(MastodonSandbox, [M_EN, M_FR])
    return [
        Account("x-en", x, X_EN),
        Account("x-fr", x, X_FR),
        Account("mastodon-en", m, M_EN),
        Account("mastodon-fr", m, M_FR),
    ]


def test_an_incident_is_one_reply_chain_per_platform_and_language(servers, harness):
    accounts = four_channels(servers)
    h = harness(accounts)
    steps = [
        incident(en=LONG_EN, fr=LONG_FR),  # too long for one post on X: a numbered thread
        incident(status="identified", en="Generators failed.", fr="Les groupes ont échoué."),
        incident(status="monitoring", en="Power is back.", fr="Le courant est revenu."),
        incident(status="resolved", en="All servers are up.", fr="Tout est rétabli."),
    ]
    for step in steps:
        h.publish(step)
        h.settle()  # one step at a time: nothing is coalesced, every step is a post

    for a in accounts:
        sent = check_threads(h.store, a)
        (thread,) = (t for t in a.server.threads().values() if t[0].account == a.username)
        assert [p.id for p in thread] == [p.remote_id for p in sent]
        # On X the long opening is a thread: its essentials first, the details in replies.
        opened = [k for k in kinds(sent) if k.startswith("opened")]
        assert len(opened) >= 2 if a.name.startswith("x") else opened == ["opened"]
        assert kinds(sent) == [*opened, "update", "update", "resolved"]
        assert all(status_length(p.text) <= 500 for p in thread)
    x_fr = [p.text for p in accounts[1].posts()]
    assert "Incident en cours" in x_fr[0] and any("Service rétabli" in t for t in x_fr[-3:])
    m_en = [p.text for p in accounts[2].posts()]
    assert "Incident:" in m_en[0] and "Resolved" in m_en[-1]
    assert not h.store.posts(states=(PostState.FAILED, PostState.SUPERSEDED))
    # `status` links each thread on its platform, for ops to check what readers see
    threads = h.status_json()["incidents"][0]["threads"]
    x_root = check_threads(h.store, accounts[0])[0].remote_id
    assert threads["x-en"]["link"] == f"https://x.com/i/status/{x_root}"
    assert threads["mastodon-fr"]["link"].startswith("http")


# -- 2. faults: 5xx, timeouts, dropped answers and a 429 burst -----------------------------


def watch_429s(channel: Any) -> list[requests.Response]:
    """The 429 answers this channel's client received, headers included (a requests hook:
    it observes the real client's session, it changes nothing)."""
    session = channel.client.session if isinstance(channel, XChannel) else channel.api.session
    seen: list[requests.Response] = []

    def hook(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        if response.status_code == 429:
            seen.append(response)

    session.hooks["response"].append(hook)
    return seen


def reset_of(response: requests.Response) -> float:
    """Epoch second before which the 429 said not to come back (the later limit on X)."""
    headers = response.headers
    if "X-RateLimit-Reset" in headers and "x-rate-limit-limit" not in headers:  # Mastodon
        return datetime.fromisoformat(headers["X-RateLimit-Reset"]).timestamp()
    return max(
        float(headers[f"{prefix}-reset"])
        for prefix in ("x-rate-limit", "x-user-limit-24hour")
        if headers.get(f"{prefix}-remaining") == "0"
    )


def assert_idle_while_paused(
    log: list[RequestRecord], answers: list[requests.Response], name: str
) -> None:
    """No request reached the server between a 429 and the reset it announced, and the
    channel came back after it."""
    refusals = [r for r in log if r.status == 429]
    assert len(refusals) == len(answers), f"{name}: the client missed a 429"
    for refusal, answer in zip(refusals, answers, strict=True):
        reset = reset_of(answer)
        assert reset > refusal.time, f"{name}: a 429 whose reset is already past"
        early = [r for r in log if refusal.time < r.time < reset]
        assert not early, f"{name}: {len(early)} request(s) while paused until {reset}"
        assert any(r.time >= reset for r in log), f"{name}: never resumed"


def short_windows(server: XSandbox | MastodonSandbox, period: float = 1.0) -> None:
    """Short rate-limit windows, so that a 429's reset comes within the test.

    On X, the sandbox's injected 429 says both the 15-minute and the 24-hour limits are
    spent, so both windows are shortened.
    """
    if isinstance(server, XSandbox):
        for endpoint, limit in (
            ("POST /2/tweets", 1000),
            ("POST /2/tweets 24h", 100_000),
            ("GET /2/users/me", 1000),
            ("GET /2/users/:id/tweets", 1000),
        ):
            server.set_rate_limit(endpoint, limit, period=period)
    else:
        server.set_rate_limits(request_period=period)


def test_faults_lose_and_double_nothing_and_a_429_pauses_only_until_its_reset(servers, harness):
    # One server per channel, so that each request log is one channel's.
    accounts = [
        Account("x-en", servers(XSandbox, [X_EN]), X_EN, {"timeout": "250ms"}),
        Account("x-fr", servers(XSandbox, [X_FR]), X_FR, {"timeout": "250ms"}),
        Account("mastodon-en", servers(MastodonSandbox, [M_EN]), M_EN, {"timeout": "250ms"}),
        Account("mastodon-fr", servers(MastodonSandbox, [M_FR]), M_FR, {"timeout": "250ms"}),
    ]
    for a in accounts:
        short_windows(a.server)
        # Reads fail too: looking for a post whose outcome is unknown must survive that.
        a.server.faults.configure(
            scope="all",
            error_rate=0.3,
            timeout_rate=0.1,
            hang_seconds=0.6,
            hang_after_processing=True,  # timed out, and yet published
            drop_rate=0.05,  # accepted, then the connection drops
        )
    h = harness(accounts)
    answers = {a.name: watch_429s(h.app.channels[a.name]) for a in accounts}

    h.publish(incident("a", en=LONG_EN, fr=LONG_FR), incident("b"))
    h.settle(20)
    # Beyond the random faults, each of these hits the very next request, which is the
    # post of the next step (nothing is left to look up after a settle).
    arm: list[Callable[[Faults], None]] = [
        lambda f: f.hang_next(1, seconds=0.6, after_processing=True),  # posted, timed out
        lambda f: f.drop_next(1),  # posted, connection dropped
        lambda f: f.rate_limit_next(3),  # a 429 burst
        lambda f: None,
    ]
    steps = [
        incident("a", status="identified", en="Generators failed.", fr="Groupes en panne."),
        incident("b", status="resolved", en="Fixed.", fr="Réparé."),
        incident("a", status="monitoring", en="Power is back.", fr="Courant revenu."),
        incident("a", status="resolved", en="All up.", fr="Tout est rétabli."),
    ]
    for fault, step in zip(arm, steps, strict=True):
        for a in accounts:
            fault(a.server.faults)
        h.publish(step)
        h.settle(20)

    for a in accounts:
        sent = check_threads(h.store, a)
        opened = [k for k in kinds(sent) if k.startswith("opened") and "." in k]
        opened = opened or ["opened"]
        assert kinds([p for p in sent if p.incident_id == "a"]) == [
            *opened,
            "update",
            "update",
            "resolved",
        ]
        assert kinds([p for p in sent if p.incident_id == "b"]) == ["opened", "resolved"]
        log = a.server.requests_log()
        assert_idle_while_paused(log, answers[a.name], a.name)
        # The run met every kind of trouble it claims to survive, on the posts themselves.
        posting = [r for r in log if r.method == "POST"]
        assert {"error", "timeout", "drop", "rate_limit"} <= {r.fault for r in posting}
        created = [r for r in posting if r.fault in ("timeout", "drop") and r.handled_status]
        assert created, f"{a.name}: no post was accepted and then lost on the wire"
    assert not h.store.posts(states=(PostState.FAILED, PostState.SUPERSEDED))


# -- 3a. accept then drop ------------------------------------------------------------------


def outbox_post(key: str, text: str, language: str = "en") -> OutboxPost:
    return OutboxPost(
        key=key,
        channel="test",
        incident_id="sbg-power",
        kind=PostKind.OPENED,
        revision=1,
        sequence=1,
        part=1,
        parts=1,
        text=text,
        length=len(text),
        limit=280,
        language=language,
        reply_to_key=None,
        state=PostState.PENDING,
        planned_at=datetime.now(UTC),
    )


@pytest.mark.parametrize("platform", ["x", "mastodon"])
def test_a_post_accepted_then_dropped_is_adopted_not_posted_again(servers, harness, platform):
    if platform == "x":
        a = Account("x-en", servers(XSandbox, [X_EN]), X_EN)
    else:
        a = Account("mastodon-en", servers(MastodonSandbox, [M_EN]), M_EN)
    h = harness([a])
    a.server.faults.drop_next(1)
    h.publish(incident())
    h.settle()

    (post,) = check_threads(h.store, a)
    assert post.attempts == 1, "re-sent instead of looked up"
    posting = [r for r in a.server.requests_log() if r.method == "POST"]
    assert [(r.fault, r.status) for r in posting] == [("drop", None)]
    assert posting[0].handled_status in (200, 201)  # it was created before the drop


def test_x_finds_its_own_post_and_a_blind_retry_is_refused_as_a_duplicate(servers, harness):
    a = Account("x-en", servers(XSandbox, [X_EN]), X_EN)
    channel = harness([a]).app.channels["x-en"]
    request = PublishRequest(outbox_post("k1", "Outage & recovery <SBG>"), None, None, None)
    a.server.faults.drop_next(1)
    with pytest.raises(TransientError, match="network"):  # tweepy lets requests' error out
        channel.publish(request)
    (created,) = a.posts()
    assert channel.find_published(request).remote_id == created.id
    # Even without the look-up, X's duplicate refusal leads back to the same post.
    assert channel.publish(request).remote_id == created.id
    assert len(a.posts()) == 1
    other = PublishRequest(outbox_post("k2", "Outage & recovery"), None, None, None)
    assert channel.find_published(other) is None, "a prefix is not the same post"


def test_mastodon_retry_with_the_same_idempotency_key_returns_the_original(servers, harness):
    a = Account("mastodon-en", servers(MastodonSandbox, [M_EN]), M_EN)
    channel = harness([a]).app.channels["mastodon-en"]
    request = PublishRequest(
        outbox_post("sbg:r1:mastodon-en:opened.1:p1", "Outage"), None, None, None
    )
    a.server.faults.drop_next(1)
    with pytest.raises(TransientError, match="network"):
        channel.publish(request)
    (created,) = a.posts()
    assert channel.publish(request).remote_id == created.id
    assert [p.idempotency_key for p in a.posts()] == [request.idempotency_key]


# -- 3b. kill -9 at random points, restart, repeat ----------------------------------------

STATE_ENTRY = """
[[incidents]]
id = "{id}"
title = {{ en = "Outage of {id}", fr = "Panne de {id}" }}
status = "{status}"
severity = "critical"
services = ["VPS"]
regions = ["SBG"]
started_at = {started}
message = {{ en = "We are restoring {id}.", fr = "Nous rétablissons {id}." }}
"""


def write_state(path: Path, ids: Sequence[str], status: str) -> None:
    text = "".join(
        STATE_ENTRY.format(id=i, status=status, started=STARTED.isoformat()) for i in ids
    )
    tmp = path.with_name(".state.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)  # the daemon must never read half a file


class DaemonProcess:
    """``broadcaster run`` in a subprocess, publishing to sandboxes in this process."""

    def __init__(self, tmp: Path, config: Path) -> None:
        self.tmp = tmp
        self.config = config
        self.store_path = tmp / "data" / "broadcaster.sqlite3"
        self.log_path = tmp / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "broadcaster", "run", "--config", str(self.config)],
                cwd=self.tmp,
                stdout=log,
                stderr=log,
            )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(20)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        if not self.store_path.exists():
            return []
        db = sqlite3.connect(self.store_path, timeout=5)
        try:
            return db.execute(sql).fetchall()
        except sqlite3.OperationalError:  # the daemon has not created its tables yet
            return []
        finally:
            db.close()

    def sent(self) -> int:
        rows = self.query("SELECT COUNT(*) FROM posts WHERE state = 'sent'")
        return rows[0][0] if rows else 0

    def wait_sent(self, n: int, timeout: float = 20) -> int:
        def enough() -> bool:
            assert self.alive(), "the daemon died:\n" + self.log_path.read_text()[-3000:]
            return self.sent() >= n

        wait_for(enough, f"{n} posts sent", timeout)
        return self.sent()


def test_kill_9_at_random_points_loses_and_doubles_nothing(tmp_path: Path, servers):
    rng = random.Random(9)
    x = servers(XSandbox, [X_EN, X_FR])
    m = servers(MastodonSandbox, [M_EN, M_FR])
    for server in (x, m):
        # Slow enough that a kill often lands mid-request; some answers lost on the wire.
        server.faults.configure(latency=0.05, error_rate=0.05, drop_rate=0.03)
    fast = {"timeout": "2s", "retry_initial": "20ms", "retry_max": "200ms"}
    accounts = [
        Account("x-en", x, X_EN, fast),
        Account("x-fr", x, X_FR, fast),
        Account("mastodon-en", m, M_EN, fast),
        Account("mastodon-fr", m, M_FR, fast),
    ]
    config = write_config(tmp_path, accounts, cadence="1s")  # a reminder a second, per thread
    ids = ["sbg-power", "rbx-network", "gra-storage"]
    write_state(tmp_path / "state.toml", ids, "investigating")
    daemon = DaemonProcess(tmp_path, config)
    caught: list[str] = []  # keys of posts published while their daemon died
    try:
        daemon.start()
        for server in (x, m, None):
            sent = daemon.wait_sent(daemon.sent() + rng.randint(20, 30))
            if server is not None:
                # Kill exactly while the platform holds a post it created but never
                # answered: the worst moment, which random timing only sometimes finds.
                server.faults.hang_next(1, seconds=3, after_processing=True)
                assert server.wait_for(
                    lambda s=server: any(r.fault == "timeout" for r in s.requests_log()), 10
                )
            daemon.kill()
            sending = daemon.query("SELECT channel, key, text FROM posts WHERE state='sending'")
            published = {(p.account, p.text) for p in x.posts() + m.posts()}
            by_channel = {a.name: a.username for a in accounts}
            caught += [k for c, k, t in sending if (by_channel[c], t) in published]
            if server is not None:
                server.faults.reset()
                server.faults.configure(latency=0.05, error_rate=0.05, drop_rate=0.03)
            assert sent > 0
            daemon.start()
        write_state(tmp_path / "state.toml", ids, "resolved")

        def finished() -> bool:
            assert daemon.alive(), daemon.log_path.read_text()[-3000:]
            (open_posts,) = daemon.query(
                "SELECT COUNT(*) FROM posts WHERE state IN ('pending', 'sending')"
            )[0]
            (closings,) = daemon.query(
                "SELECT COUNT(*) FROM posts WHERE kind = 'resolved' AND state = 'sent'"
            )[0]
            return open_posts == 0 and closings == len(ids) * len(accounts)

        wait_for(finished, "every thread closed and delivered", 30)
        assert daemon.stop() == 0
    finally:
        if daemon.alive():
            daemon.kill()
        print(daemon.log_path.read_text()[-5000:])

    store = Store(daemon.store_path)
    try:
        total = 0
        for a in accounts:
            sent_posts = check_threads(store, a)
            assert {p.incident_id for p in sent_posts} == set(ids)
            total += len(sent_posts)
        assert not store.posts(states=(PostState.FAILED,))
    finally:
        store.close()
    assert total >= 80, f"only {total} posts: the run proves little"
    assert len(caught) >= 2, "no kill landed between publication and its record"


# -- 4. one platform down for the whole run ------------------------------------------------


@pytest.mark.parametrize("outage", ["503", "hanging", "stopped"])
def test_a_platform_that_is_down_does_not_delay_the_other(servers, harness, outage):
    x = Account("x-en", servers(XSandbox, [X_EN]), X_EN)
    m = Account("mastodon-en", servers(MastodonSandbox, [M_EN]), M_EN, {"timeout": "500ms"})
    if outage == "503":  # every request, the instance read at start included
        m.server.faults.configure(scope="all", error_rate=1.0, error_statuses=(503,))
    elif outage == "hanging":  # every post times out
        m.server.faults.configure(timeout_rate=1.0, hang_seconds=2.0)
    h = harness([x, m]) if outage != "stopped" else None
    if h is None:
        port = m.server.port
        m.server.stop()  # nothing listens there any more: connection refused
        h = harness(
            [replace(m, options={**m.options, "api_base_url": f"http://127.0.0.1:{port}"}), x]
        )

    steps = [
        incident(),
        incident(status="identified", en="Generators failed.", fr="Groupes en panne."),
        incident(status="monitoring", en="Power is back.", fr="Courant revenu."),
    ]
    for step in steps:
        h.publish(step)
        h.settle(5, channel="x-en")
    sent = check_threads(h.store, x)
    remote = {p.id: p for p in x.posts()}
    delays = [remote[p.remote_id].created_at - p.planned_at.timestamp() for p in sent]
    assert len(sent) == 3 and max(delays) < 0.5, f"X posts delayed: {delays}"
    wait_for(lambda: h.channel_state("mastodon-en").last_error, "Mastodon failing", 5)
    assert h.undelivered("mastodon-en"), "Mastodon was down, yet its posts went out?"

    if outage != "stopped":
        m.server.faults.reset()  # Mastodon is back: it catches up, newest state first
        h.settle(10)
        posts = check_threads(h.store, m)
        assert kinds(posts)[0] == "opened" and kinds(posts)[-1] == "update"
        assert "Power is back" in posts[-1].text


# -- 5. rate limits: our own budget, and the server's 429 -----------------------------------


def test_a_budget_below_the_servers_limit_never_meets_a_429(servers, harness):
    x = servers(XSandbox, [X_EN])
    x.set_rate_limit("POST /2/tweets", 3, period=1.0)
    m = servers(MastodonSandbox, [M_EN])
    m.set_rate_limits(status_limit=3, status_period=1.0)
    budget = {"max_posts": "2/1s"}  # below the 3 a second both servers allow
    accounts = [Account("x-en", x, X_EN, budget), Account("mastodon-en", m, M_EN, budget)]
    h = harness(accounts)
    h.publish(*(incident(f"incident-{n}") for n in range(6)))  # openings are never coalesced
    h.settle(10)
    for a in accounts:
        assert len(check_threads(h.store, a)) == 6
        assert not [r for r in a.server.requests_log() if r.status == 429]
        # The budget, not luck, kept them apart: any three posts span at least a second.
        times = h.store.sent_times(a.name, STARTED)
        spans = [t2 - t0 for t0, t2 in zip(times, times[2:], strict=False)]
        assert spans and min(spans) >= timedelta(seconds=1)


def test_x_waits_for_the_reset_when_its_headers_say_the_window_is_spent(servers, harness):
    x = Account("x-en", servers(XSandbox, [X_EN]), X_EN)
    x.server.set_rate_limit("POST /2/tweets", 2, period=1.0)
    h = harness([x])
    h.publish(*(incident(f"incident-{n}") for n in range(3)))
    h.settle(5)
    assert len(check_threads(h.store, x)) == 3
    posting = [r for r in x.server.requests_log() if r.method == "POST"]
    assert [r.status for r in posting] == [201, 201, 201], "collected a 429 it was warned of"
    # The window started with the first post; the third waited for its (whole-second) reset.
    assert posting[2].time >= posting[0].time + 1.0


@pytest.mark.parametrize("platform", ["x", "mastodon"])
def test_a_reset_is_read_on_the_servers_clock_not_ours(servers, harness, platform):
    # The platform's clock is an hour ahead of ours: its reset, one second away on its
    # clock, must not become an hour-long silence here.
    ahead = lambda: time.time() + 3600  # noqa: E731
    if platform == "x":
        a = Account("x-en", servers(XSandbox, [X_EN], clock=ahead), X_EN)
    else:
        a = Account("mastodon-en", servers(MastodonSandbox, [M_EN], clock=ahead), M_EN)
    short_windows(a.server)
    channel = harness([a]).app.channels[a.name]
    a.server.faults.rate_limit_next(1)
    request = PublishRequest(outbox_post("k", "Outage"), None, None, None)
    with pytest.raises(RateLimited) as refused:
        channel.publish(request)
    assert refused.value.until - datetime.now(UTC) < timedelta(seconds=3)


def test_a_429_pauses_the_channel_until_the_reset_and_updates_are_coalesced_meanwhile(
    servers, harness
):
    accounts = [
        Account("x-en", servers(XSandbox, [X_EN]), X_EN),
        Account("mastodon-en", servers(MastodonSandbox, [M_EN]), M_EN),
    ]
    for a in accounts:
        short_windows(a.server, period=2.0)  # before the first request opens a window
    h = harness(accounts)
    answers = {a.name: watch_429s(h.app.channels[a.name]) for a in accounts}
    h.publish(incident("a"), incident("b"), incident("c"))
    h.settle()
    for a in accounts:
        a.server.faults.rate_limit_next(1)  # the next request: the opening of "d"

    h.publish(incident("d"))
    wait_for(
        lambda: all(h.channel_state(a.name).paused_until for a in accounts),
        "both channels to pause",
        5,
    )
    for n in (1, 2, 3):
        h.publish(incident("a", status="identified", en=f"Update {n}.", fr=f"Point {n}."))
    h.publish(incident("b", status="resolved", en="Fixed.", fr="Réparé."))
    assert all(datetime.now(UTC) < h.channel_state(a.name).paused_until for a in accounts)
    h.settle(10)

    for a in accounts:
        sent = check_threads(h.store, a)
        by_incident = {i: kinds([p for p in sent if p.incident_id == i]) for i in "abcd"}
        assert by_incident == {
            "a": ["opened", "update"],  # only the newest of the three updates
            "b": ["opened", "resolved"],
            "c": ["opened"],
            "d": ["opened"],  # refused with the 429, sent after the reset
        }
        assert "Update 3." in sent[-2].text or "Update 3." in sent[-1].text
        superseded = h.store.posts(channel=a.name, states=(PostState.SUPERSEDED,))
        assert ["Update 1." in superseded[0].text, "Update 2." in superseded[1].text] == [
            True,
            True,
        ]
        assert {p.kind for p in superseded} == {PostKind.UPDATE}
        log = a.server.requests_log()
        assert_idle_while_paused(log, answers[a.name], a.name)
        (answer,) = answers[a.name]
        resumed = min(r.time for r in log if r.time >= reset_of(answer))
        assert resumed - reset_of(answer) < 1.5, "the channel did not resume at the reset"
        assert h.channel_state(a.name).paused_until is None


# -- 6. failures classified ----------------------------------------------------------------


class Refusing:
    """A sandbox that can answer every API request as for a revoked token or a suspended
    account (the sandboxes have no such switch of their own)."""

    refusal: tuple[int, dict[str, Any]] | None = None

    def _route(self, request: Request) -> Response:
        if self.refusal is not None and request.path != "/":
            return Response.json(*self.refusal)
        return super()._route(request)  # type: ignore[misc]


class RefusingX(Refusing, XSandbox):
    pass


class RefusingMastodon(Refusing, MastodonSandbox):
    pass


X_REFUSALS = {
    401: (
        401,
        {"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"},
    ),
    403: (
        403,
        {
            "title": "Forbidden",
            "type": "about:blank",
            "status": 403,
            "detail": "Your account is suspended and is not permitted to access this feature.",
        },
    ),
}
MASTODON_REFUSALS = {
    401: (401, {"error": "The access token was revoked"}),
    403: (403, {"error": "Your login is currently disabled"}),
}


@pytest.mark.parametrize(("x_status", "mastodon_status"), [(401, 403), (403, 401), (402, 401)])
def test_refused_credentials_make_the_channel_unhealthy_until_fixed(
    servers, harness, x_status, mastodon_status
):
    x = Account("x-en", servers(RefusingX, [X_EN]), X_EN)
    m = Account("mastodon-en", servers(RefusingMastodon, [M_EN]), M_EN)
    h = harness([x, m])
    h.publish(incident())
    h.settle()

    if x_status == 402:
        x.server.credits_exhausted = True  # X's pay-per-use credits ran out
    else:
        x.server.refusal = X_REFUSALS[x_status]
    m.server.refusal = MASTODON_REFUSALS[mastodon_status]
    h.publish(incident(status="identified", en="Generators failed.", fr="Groupes en panne."))
    wait_for(
        lambda: not any(h.channel_state(a.name).healthy for a in (x, m)),
        "both channels to be marked unhealthy",
        5,
    )
    status = h.status_json()
    for a, code in ((x, x_status), (m, mastodon_status)):
        channel = status["channels"][a.name]
        assert channel["healthy"] is False
        assert channel["last_error"].startswith(str(code))
        assert channel["pending"] + channel["sending"] == 1 and channel["failed"] == 0
        (waiting,) = h.undelivered(a.name)
        # Refused, so certainly not published: back to pending between two tries (the
        # worker keeps trying the channel, and marks the post sending during each try).
        wait_for(
            lambda a=a: h.undelivered(a.name)[0].state is PostState.PENDING,
            f"the refused post on {a.name} to be pending between tries",
            5,
        )
        assert waiting.key in {u["key"] for u in status["undelivered"]}
    assert len(x.posts()) == len(m.posts()) == 1

    x.server.refusal = m.server.refusal = None  # ops fixed the account
    x.server.credits_exhausted = False
    h.settle()
    status = h.status_json()
    for a in (x, m):
        assert kinds(check_threads(h.store, a)) == ["opened", "update"]
        assert status["channels"][a.name]["healthy"] is True
        assert status["channels"][a.name]["last_error"] is None


def test_a_post_the_platform_refuses_fails_with_its_reason_and_the_thread_goes_on(servers, harness):
    # Configured limits above what the servers accept: the servers have the last word.
    x = Account("x-en", servers(XSandbox, [X_EN]), X_EN, {"max_characters": 400})
    m = Account(
        "mastodon-en",
        servers(MastodonSandbox, [M_EN], max_characters=300),
        M_EN,
        {"max_characters": 600},
    )
    h = harness([x, m])
    h.publish(incident())
    h.settle()
    h.publish(incident(status="identified", en=LONG_EN[:200], fr=LONG_FR[:200]))
    h.settle()
    h.publish(incident(status="monitoring", en="Power is back.", fr="Courant revenu."))
    h.settle()

    reasons = {
        "x-en": "403 Your Tweet text is too long.",
        "mastodon-en": "422 Validation failed: Text character limit of 300 exceeded",
    }
    status = h.status_json()
    for a in (x, m):
        (failed,) = h.store.posts(channel=a.name, states=(PostState.FAILED,))
        assert failed.kind is PostKind.UPDATE and failed.attempts == 1
        assert failed.last_error.startswith(reasons[a.name])
        # The next post replies to the last one published: the thread is not broken.
        assert kinds(check_threads(h.store, a)) == ["opened", "update"]
        assert status["channels"][a.name]["failed"] == 1
        assert status["channels"][a.name]["healthy"] is True


def test_x_replies_refused_fall_back_to_linked_standalone_posts_even_after_restart(
    servers, harness
):
    a = Account("x-en", servers(XSandbox, [X_EN]), X_EN)
    h = harness([a])
    h.publish(incident())
    h.settle()
    root = a.posts()[0]
    a.server.replies_refused = True
    h.publish(incident(status="identified", en="Generators failed.", fr="Groupes en panne."))
    h.settle()
    assert h.channel_state("x-en").replies_refused is True

    h.restart()  # the daemon remembers: no reply is tried again, none refused again
    a.server.clear_requests_log()
    h.publish(incident(status="monitoring", en="Power is back.", fr="Courant revenu."))
    h.settle()
    assert [r.status for r in a.server.requests_log() if r.method == "POST"] == [201]

    sent = h.store.posts(channel="x-en", states=(PostState.SENT,))
    assert kinds(sent) == ["opened", "update", "update"]
    published = a.posts()
    assert [p.id for p in published] == [p.remote_id for p in sent]
    link = f"https://x.com/i/status/{root.id}"
    for post, remote in zip(sent[1:], published[1:], strict=True):
        assert remote.in_reply_to is None
        assert remote.text == f"{post.text}\n{link}"  # standalone, linking the thread


def test_a_deleted_parent_does_not_break_the_thread_for_good(
    servers, harness, make_tweepy, make_mastodon
):
    x = Account("x-en", servers(XSandbox, [X_EN]), X_EN)
    m = Account("mastodon-en", servers(MastodonSandbox, [M_EN]), M_EN)
    h = harness([x, m])
    h.publish(incident())
    h.settle()
    h.publish(incident(status="identified", en="Generators failed.", fr="Groupes en panne."))
    h.settle()
    # A human deletes the latest post of each thread.
    make_tweepy(x.server, X_EN).delete_tweet(x.posts()[-1].id)
    make_mastodon(m.server, M_EN).status_delete(m.posts()[-1].id)

    h.publish(incident(status="monitoring", en="Power is back.", fr="Courant revenu."))
    h.settle()
    h.publish(incident(status="resolved", en="All up.", fr="Tout est rétabli."))
    h.settle()
    for a in (x, m):
        sent = h.store.posts(channel=a.name, states=(PostState.SENT,))
        assert kinds(sent) == ["opened", "update", "update", "resolved"]
        remote = {p.id: p for p in a.server.posts()}
        root, deleted, standalone, closing = (remote[p.remote_id] for p in sent)
        assert deleted.deleted and not standalone.deleted
        assert standalone.in_reply_to is None  # nothing left to reply to ...
        assert standalone.text.endswith(root.id)  # ... so it links the thread's first post
        assert closing.in_reply_to == standalone.id  # and the thread goes on from there


# -- 7. Mastodon's character limit comes from the instance -----------------------------------


def test_mastodon_reads_its_character_limit_from_the_instance(servers, harness):
    a = Account("mastodon-fr", servers(MastodonSandbox, [M_FR], max_characters=300), M_FR)
    h = harness([a])
    assert h.app.editor.rules["mastodon-fr"] == rule_for("mastodon", 300)
    h.publish(incident(en=LONG_EN, fr=LONG_FR + " " + LONG_FR))
    h.settle()
    sent = check_threads(h.store, a)
    assert kinds(sent) == [f"opened.{n}" for n in range(1, len(sent) + 1)] and len(sent) >= 3
    assert all(p.limit == 300 and status_length(p.text) <= 300 for p in sent)
    assert max(status_length(p.text) for p in sent) > 250  # filled, not split needlessly


def test_previews_and_dry_runs_split_with_the_limit_the_daemon_read(servers, harness, capsys):
    from broadcaster.app import default_rule, seen_limits
    from broadcaster.cli import main

    a = Account("mastodon-fr", servers(MastodonSandbox, [M_FR], max_characters=300), M_FR)
    h = harness([a])
    config = load_config(h.config_path)
    assert seen_limits(config) == {"mastodon-fr": 300}
    channel = config.channels["mastodon-fr"]
    assert default_rule(channel, seen_limits(config).get("mastodon-fr")).limit == 300
    state = config.state_file
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(
        '[[incidents]]\nid = "a"\ntitle = "Panne"\nstatus = "investigating"\n'
        "started_at = 2017-11-09T07:23:00+01:00\n"
    )
    assert main(["preview", "--config", str(h.config_path), "--format", "json"]) == 0
    (post,) = json.loads(capsys.readouterr().out)
    assert post["parts"][0]["limit"] == 300


def test_x_takes_a_duplicate_refusal_for_its_own_lagging_post_for_a_while(x_sandbox):
    """X's timeline can lag its duplicate check: 'duplicate' right after a lost answer most
    likely means our post went out, so it stays 'unknown' (looked for again) for a while,
    and is recorded as failed only once that patience is spent."""
    from broadcaster.channels.base import Rejected
    from broadcaster.config import ChannelConfig, Secret
    from broadcaster.sandbox import DEFAULT_X_ACCOUNT as ACCOUNT

    channel = XChannel(
        ChannelConfig(
            name="x-en",
            platform="x",
            language="en",
            api_base_url=x_sandbox.base_url,
            credentials={
                "consumer_key": Secret(ACCOUNT.consumer_key),
                "consumer_secret": Secret(ACCOUNT.consumer_secret),
                "access_token": Secret(ACCOUNT.access_token),
                "access_token_secret": Secret(ACCOUNT.access_token_secret),
            },
            timeout=timedelta(seconds=2),
        )
    )
    x_sandbox.add_post("Same words, posted long ago", account=ACCOUNT)  # not ours to adopt

    def request(planned_at: datetime) -> PublishRequest:
        post = OutboxPost(
            key="a:r1:x-en:opened.1:p1",
            channel="x-en",
            incident_id="a",
            kind=PostKind.OPENED,
            revision=1,
            sequence=1,
            part=1,
            parts=1,
            text="Same words, posted long ago",
            length=27,
            limit=280,
            language="en",
            reply_to_key=None,
            state=PostState.SENDING,
            planned_at=planned_at,
            attempts=5,
        )
        return PublishRequest(post=post, in_reply_to=None, parent_key=None, thread_root=None)

    try:
        with pytest.raises(TransientError, match="not yet in the timeline"):
            channel.publish(request(datetime.now(UTC)))
        with pytest.raises(Rejected, match="duplicate"):
            channel.publish(request(datetime.now(UTC) - timedelta(minutes=11)))
    finally:
        channel.close()
    assert len(x_sandbox.posts()) == 1, "nothing was published twice"
