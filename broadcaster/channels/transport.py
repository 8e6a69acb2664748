"""HTTP transport tweaks for platform client libraries that don't expose them.

tweepy's ``Client`` hard-codes ``https://api.twitter.com`` and never passes a timeout, so
a stalled connection would hang the delivery thread forever and there is no way to aim
it at another host (a sandbox, or api.x.com). Both are fixed one level down, in the
``requests`` session tweepy exposes as ``client.session``::

    client = tweepy.Client(consumer_key=..., consumer_secret=..., access_token=...,
                           access_token_secret=...)
    configure_session(client.session, base_url, timeout)

Signatures are left untouched: requests applies auth (the OAuth 1.0a signature) while
preparing the request, before an adapter sees it, so a rebased request still carries a
signature over the original public URL. The X sandbox accepts exactly that; the real X
API accepts it for api.twitter.com → api.x.com because both are the same service.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

X_PUBLIC_BASE_URLS: tuple[str, ...] = ("https://api.twitter.com", "https://api.x.com")


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RebasingAdapter(HTTPAdapter):
    """Sends requests for any ``rewrite_from`` base URL to ``base_url`` instead, keeping
    path and query, and applies ``timeout`` to every request sent without one.

    Requests to other URLs pass through unchanged (apart from the default timeout), so
    one adapter can be mounted for all of "https://" and "http://".
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        rewrite_from: tuple[str, ...] = X_PUBLIC_BASE_URLS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.rewrite_from = tuple(prefix.rstrip("/") for prefix in rewrite_from)

    def rebase(self, url: str) -> str:
        for prefix in self.rewrite_from:
            # Compare at a boundary so https://api.x.com.evil.example is never rewritten.
            if url.startswith(prefix) and url[len(prefix) : len(prefix) + 1] in ("", "/", "?"):
                return self.base_url + url[len(prefix) :]
        return url

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        if timeout is None:
            timeout = self.timeout
        original = request.url or ""
        rebased = self.rebase(original)
        if rebased != original:
            request.url = rebased
            if _is_loopback(rebased):
                # The session chose proxies for the public host; a sandbox on loopback
                # must never be reached through them.
                proxies = {}
        return super().send(
            request,
            stream=stream,
            timeout=timeout,
            verify=verify,
            cert=cert,
            proxies=dict(proxies) if proxies is not None else None,
        )


def configure_session(
    session: requests.Session,
    base_url: str,
    timeout: float,
    *,
    rewrite_from: tuple[str, ...] = X_PUBLIC_BASE_URLS,
) -> None:
    """Mount a ``RebasingAdapter`` on ``session`` for both schemes."""
    adapter = RebasingAdapter(base_url, timeout=timeout, rewrite_from=rewrite_from)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
