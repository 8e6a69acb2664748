"""The X sandbox's accounts and its check of OAuth 1.0a user-context signatures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from oauthlib.common import Request as OAuthRequest
from oauthlib.oauth1.rfc5849 import signature as oauth_signature

from .http import Request

# Hosts tweepy (and other clients) sign requests for. See signature_valid.
X_PUBLIC_BASE_URLS: tuple[str, ...] = ("https://api.twitter.com", "https://api.x.com")


@dataclass(frozen=True)
class XAccount:
    """One X user as an app sees it: the app's consumer pair plus the user's token pair."""

    consumer_key: str
    consumer_secret: str
    access_token: str
    access_token_secret: str
    user_id: str
    username: str
    name: str = "Status (sandbox)"
    bearer_token: str | None = None  # an OAuth 2.0 user-context token, if wanted


DEFAULT_X_ACCOUNT = XAccount(
    consumer_key="sandbox-consumer-key",
    consumer_secret="sandbox-consumer-secret",
    access_token="1500000000000000001-sandboxaccesstoken",
    access_token_secret="sandbox-access-token-secret",
    user_id="1500000000000000001",
    username="status_sandbox",
)


def signature_valid(
    request: Request,
    header: str,
    oauth: Mapping[str, str],
    account: XAccount,
    bases: Sequence[str],
) -> bool:
    """Whether the OAuth 1.0a HMAC-SHA1 signature in ``header`` is ``account``'s, for the
    request addressed to any of ``bases``.

    The signature covers scheme, host and path. tweepy hard-codes and signs
    https://api.twitter.com/...; the RebasingAdapter redirects the already signed request
    to the sandbox, because requests applies auth while preparing the request, before any
    adapter sees it. Re-signing in the adapter would mean handing it the secrets and would
    test a path production never takes, so instead the sandbox accepts a signature made
    for its own URL or for any public X base URL the client may have signed
    (``public_base_urls``, configurable for new hosts).
    """
    body = None
    if request.content_type == "application/x-www-form-urlencoded":
        body = request.body.decode("utf-8", "replace")
    try:
        params = oauth_signature.collect_parameters(
            uri_query=urlsplit(request.target).query,
            body=body,
            headers={"Authorization": header},
            exclude_oauth_signature=True,
        )
    except ValueError:
        return False
    for base in bases:
        try:
            signed = OAuthRequest(base + request.target, http_method=request.method)
        except ValueError:
            return False
        signed.params = params
        signed.signature = oauth.get("oauth_signature", "")
        if oauth_signature.verify_hmac_sha1(
            signed, account.consumer_secret, account.access_token_secret
        ):
            return True
    return False
