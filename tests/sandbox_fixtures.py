"""Reusable pytest fixtures for tests that need the X / Mastodon sandboxes.

Loaded for the whole suite by ``conftest.py`` (``pytest_plugins``). Take the helpers
through fixtures too (``make_tweepy``, ``make_mastodon``): importing this module from a test
module, while pytest also loads it as a plugin, defeats pytest's assertion rewriting for it
and earns a warning.
Every client built here goes through the sandbox; nothing can reach a real host, because
the tweepy session rebases api.twitter.com / api.x.com onto the sandbox and Mastodon.py
is given the sandbox URL as its instance.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import mastodon
import pytest
import tweepy

from broadcaster.channels.transport import configure_session
from broadcaster.sandbox import (
    DEFAULT_MASTODON_ACCOUNT,
    DEFAULT_X_ACCOUNT,
    Faults,
    MastodonAccount,
    MastodonSandbox,
    XAccount,
    XSandbox,
)

CLIENT_TIMEOUT = 0.5  # small, so timeout tests stay fast; the sandbox answers in ~2 ms

SECOND_X_ACCOUNT = XAccount(
    consumer_key=DEFAULT_X_ACCOUNT.consumer_key,  # same app, another user
    consumer_secret=DEFAULT_X_ACCOUNT.consumer_secret,
    access_token="1500000000000000002-secondaccesstoken",
    access_token_secret="second-access-token-secret",
    user_id="1500000000000000002",
    username="status_second",
    name="Second (sandbox)",
    bearer_token="second-oauth2-user-token",
)
SECOND_MASTODON_ACCOUNT = MastodonAccount(
    access_token="second-mastodon-token", username="second", id="109000000000000002"
)


class FakeClock:
    """A settable clock for the sandboxes' rate-limit windows and timestamps."""

    def __init__(self, start: float = 1_795_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


def make_tweepy_client(
    sandbox: XSandbox, account: XAccount = DEFAULT_X_ACCOUNT, *, timeout: float = CLIENT_TIMEOUT
) -> tweepy.Client:
    client = tweepy.Client(
        consumer_key=account.consumer_key,
        consumer_secret=account.consumer_secret,
        access_token=account.access_token,
        access_token_secret=account.access_token_secret,
        bearer_token=account.bearer_token,
    )
    configure_session(client.session, sandbox.base_url, timeout)
    return client


def make_mastodon_client(
    sandbox: MastodonSandbox,
    account: MastodonAccount = DEFAULT_MASTODON_ACCOUNT,
    *,
    timeout: float = CLIENT_TIMEOUT,
    access_token: str | None = None,
) -> mastodon.Mastodon:
    return mastodon.Mastodon(
        api_base_url=sandbox.base_url,
        access_token=access_token or account.access_token,
        ratelimit_method="throw",
        request_timeout=timeout,
    )


def _is_loopback(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode()
    if host is None or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture
def no_real_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse to resolve (and so to reach) anything but loopback for this test.

    A rebasing bug then fails the test with a ConnectionError instead of quietly talking
    to api.x.com or a real Mastodon instance.
    """
    real_getaddrinfo = socket.getaddrinfo

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _is_loopback(host):
            raise OSError(f"test tried to reach {host!r}; only loopback sandboxes are allowed")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def x_sandbox(fake_clock: FakeClock) -> Iterator[XSandbox]:
    with XSandbox(
        accounts=[DEFAULT_X_ACCOUNT, SECOND_X_ACCOUNT], clock=fake_clock, faults=Faults(seed=1)
    ) as server:
        yield server


@pytest.fixture
def mastodon_sandbox(fake_clock: FakeClock) -> Iterator[MastodonSandbox]:
    with MastodonSandbox(
        accounts=[DEFAULT_MASTODON_ACCOUNT, SECOND_MASTODON_ACCOUNT],
        clock=fake_clock,
        faults=Faults(seed=1),
    ) as server:
        yield server


@pytest.fixture
def tweepy_client(x_sandbox: XSandbox) -> Iterator[tweepy.Client]:
    client = make_tweepy_client(x_sandbox)
    yield client
    client.session.close()


@pytest.fixture
def mastodon_client(mastodon_sandbox: MastodonSandbox) -> Iterator[mastodon.Mastodon]:
    client = make_mastodon_client(mastodon_sandbox)
    yield client
    client.session.close()


@pytest.fixture
def make_tweepy() -> Callable[..., tweepy.Client]:
    """``make_tweepy(sandbox, account=DEFAULT_X_ACCOUNT, *, timeout=0.5)``."""
    return make_tweepy_client


@pytest.fixture
def make_mastodon() -> Callable[..., mastodon.Mastodon]:
    """``make_mastodon(sandbox, account=DEFAULT_MASTODON_ACCOUNT, *, timeout=0.5,
    access_token=None)``."""
    return make_mastodon_client
