"""Local stand-ins for the X API v2 and Mastodon, for tests, benchmarks and ops drills.

Nothing here ever talks to a real platform: both servers bind 127.0.0.1 by default and
keep all state in memory. See ``XSandbox``, ``MastodonSandbox`` and ``Faults``.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from typing import TextIO

from .faults import FaultDecision, Faults
from .http import Post, RequestRecord
from .mastodon import DEFAULT_MASTODON_ACCOUNT, MastodonAccount, MastodonSandbox, status_length
from .x import XSandbox
from .xauth import DEFAULT_X_ACCOUNT, X_PUBLIC_BASE_URLS, XAccount

__all__ = [
    "DEFAULT_MASTODON_ACCOUNT",
    "DEFAULT_X_ACCOUNT",
    "X_PUBLIC_BASE_URLS",
    "FaultDecision",
    "Faults",
    "MastodonAccount",
    "MastodonSandbox",
    "Post",
    "RequestRecord",
    "XAccount",
    "XSandbox",
    "run_sandboxes",
    "status_length",
]


def run_sandboxes(
    x_port: int = 0,
    mastodon_port: int = 0,
    *,
    host: str = "127.0.0.1",
    x_accounts: Sequence[XAccount] | None = None,
    mastodon_accounts: Sequence[MastodonAccount] | None = None,
    x_daily_post_limit: int = 10_000,
    faults: Faults | None = None,
    out: TextIO | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Run an X and a Mastodon sandbox until Ctrl-C (or until ``stop`` is set).

    Prints both base URLs and the credentials to configure the daemon with, then blocks.
    Port 0 picks a free port. The 24-hour X post limit defaults high because a drill
    that trips the free tier's 17 posts a day after a few minutes teaches nothing; pass
    17 to rehearse exactly that. ``faults``, if given, is shared by both servers, so an
    operator can inject failures from a Python shell holding the same object.

    Meant for the ``broadcaster sandbox`` CLI command; ``stop`` exists for tests.
    """
    out = out if out is not None else sys.stdout
    stop = stop if stop is not None else threading.Event()
    x = XSandbox(
        host=host,
        port=x_port,
        accounts=x_accounts,
        daily_post_limit=x_daily_post_limit,
        faults=faults,
    )
    mastodon = MastodonSandbox(
        host=host, port=mastodon_port, accounts=mastodon_accounts, faults=faults
    )
    with x, mastodon:
        lines = [f"X sandbox:        {x.base_url}   (threads at {x.base_url}/)"]
        for account in x.accounts:
            lines += [
                f"  @{account.username} (user id {account.user_id})",
                f"    consumer_key        = {account.consumer_key}",
                f"    consumer_secret     = {account.consumer_secret}",
                f"    access_token        = {account.access_token}",
                f"    access_token_secret = {account.access_token_secret}",
            ]
            if account.bearer_token:
                lines.append(f"    bearer_token        = {account.bearer_token}")
        lines.append(f"Mastodon sandbox: {mastodon.base_url}   (threads at {mastodon.base_url}/)")
        for m_account in mastodon.accounts:
            lines += [
                f"  @{m_account.username} (account id {m_account.id})",
                f"    api_base_url = {mastodon.base_url}",
                f"    access_token = {m_account.access_token}",
            ]
        lines.append("Press Ctrl-C to stop.")
        print("\n".join(lines), file=out, flush=True)
        try:
            # A timed wait keeps the main thread responsive to Ctrl-C on every platform.
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            print("Stopping sandboxes.", file=out, flush=True)
