"""Mastodon through Mastodon.py.

``ratelimit_method="throw"``: delivery, not the library, decides when to wait, so a spent
limit pauses this channel only. Every post carries its idempotency key in the
``Idempotency-Key`` header (the server remembers it for an hour); for older unknown outcomes
the account's recent statuses are searched before re-sending.
"""

from __future__ import annotations

import html
import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from mastodon import (
    Mastodon,
    MastodonAPIError,
    MastodonError,
    MastodonNetworkError,
    MastodonNotFoundError,
    MastodonRatelimitError,
    MastodonServerError,
    MastodonUnauthorizedError,
)

from ..clock import utcnow
from ..config import ChannelConfig
from ..textfit import LengthRule, rule_for
from .base import (
    Channel,
    ChannelUnhealthy,
    DeliveryError,
    PublishRequest,
    PublishResult,
    RateLimited,
    Rejected,
    TransientError,
)

log = logging.getLogger("broadcaster.channels.mastodon")

DEFAULT_LIMIT = 500
_TAG = re.compile(r"<br\s*/?>|</p>\s*<p>|<[^>]+>")


def _plain(content: str) -> str:
    """Mastodon's HTML content back to comparable plain text."""
    text = _TAG.sub(lambda m: " " if m.group(0).startswith(("<br", "</p")) else "", content)
    return " ".join(html.unescape(text).split())


def _status_of(e: MastodonAPIError) -> int | None:
    return e.args[1] if len(e.args) > 1 and isinstance(e.args[1], int) else None


def _message_of(e: MastodonError) -> str:
    if len(e.args) > 3 and e.args[3]:
        return str(e.args[3])
    return str(e.args[0]) if e.args else type(e).__name__


class MastodonChannel(Channel):
    platform = "mastodon"

    def __init__(self, config: ChannelConfig) -> None:
        self.name = config.name
        self.language = config.language
        self.config = config
        token = config.credentials.get("access_token")
        self.api = Mastodon(
            api_base_url=config.api_base_url,
            access_token=token.reveal() if token else None,
            ratelimit_method="throw",
            request_timeout=config.timeout.total_seconds(),
            version_check_mode="none",
        )
        self._rule = rule_for("mastodon", config.max_characters or DEFAULT_LIMIT)
        self._account_id: str | None = None

    def length_rule(self) -> LengthRule:
        return self._rule

    def start(self) -> None:
        """Read the instance's own character limit, unless the config sets one."""
        if self.config.max_characters:
            return
        try:
            info = self.api.instance_v2()
            limit = int(info["configuration"]["statuses"]["max_characters"])
        except (MastodonError, KeyError, TypeError, ValueError) as e:
            # The instance may be the thing that is down; 500 is Mastodon's default.
            log.warning(
                "%s: cannot read the instance's character limit (%s); using %d",
                self.name,
                _message_of(e) if isinstance(e, MastodonError) else e,
                DEFAULT_LIMIT,
            )
            return
        self._rule = rule_for("mastodon", limit)

    def close(self) -> None:
        self.api.session.close()

    def _until(self) -> datetime:
        reset = self.api.ratelimit_reset
        if reset:
            return datetime.fromtimestamp(float(reset), UTC)
        return utcnow() + timedelta(seconds=60)

    def _classify(self, e: MastodonError) -> DeliveryError:
        if isinstance(e, MastodonRatelimitError):
            return RateLimited("429 too many requests", until=self._until())
        if isinstance(e, MastodonNetworkError):
            return TransientError(f"network: {_message_of(e)}")
        if isinstance(e, MastodonServerError):
            return TransientError(f"{_status_of(e)} server error", status=_status_of(e))
        if isinstance(e, MastodonUnauthorizedError):
            return ChannelUnhealthy(f"401 {_message_of(e)}", status=401)
        if isinstance(e, MastodonNotFoundError):
            return Rejected(f"404 {_message_of(e)}", status=404)
        if isinstance(e, MastodonAPIError):
            status = _status_of(e)
            if status == 403:
                return ChannelUnhealthy(f"403 {_message_of(e)}", status=403)
            if status in (400, 422):
                return Rejected(f"{status} {_message_of(e)}", status=status)
            return TransientError(f"{status} {_message_of(e)}", status=status)
        return TransientError(_message_of(e))

    def publish(self, request: PublishRequest) -> PublishResult:
        try:
            try:
                status = self._post(request.text, request, request.in_reply_to)
            except MastodonNotFoundError:
                if request.in_reply_to is None:
                    raise
                # The only record a new status needs is its parent: someone deleted it.
                # Replying to it would fail for every later post of the thread too; go on
                # standalone and the thread continues from this post. The server refused
                # before looking at the Idempotency-Key, so reusing it is safe.
                log.warning(
                    "%s: parent of %s is gone; posting it standalone",
                    self.name,
                    request.idempotency_key,
                )
                status = self._post(self._with_thread_link(request), request, None)
        except MastodonError as e:
            raise self._classify(e) from None
        not_before = None
        if self.api.ratelimit_remaining == 0:
            not_before = self._until()
        return PublishResult(
            remote_id=str(status["id"]), url=status.get("url"), not_before=not_before
        )

    def _post(self, text: str, request: PublishRequest, in_reply_to: str | None) -> Any:
        return self.api.status_post(
            text,
            in_reply_to_id=in_reply_to,
            idempotency_key=request.idempotency_key,
            visibility=self.config.visibility,
            language=request.language,
        )

    def _with_thread_link(self, request: PublishRequest) -> str:
        """The text with a link to the thread's first post, if there is one and it fits."""
        root = request.thread_root_url
        if not root or request.thread_root == request.in_reply_to:
            return request.text
        linked = f"{request.text}\n{root}"
        return linked if self._rule.fits(linked) else request.text

    def find_published(self, request: PublishRequest) -> PublishResult | None:
        try:
            if self._account_id is None:
                self._account_id = str(self.api.account_verify_credentials()["id"])
            statuses = self.api.account_statuses(self._account_id, limit=40)
        except MastodonError as e:
            raise self._classify(e) from None
        # As sent: the text itself, or its standalone variant when the parent was gone.
        wanted = {
            " ".join(text.split()) for text in (request.text, self._with_thread_link(request))
        }
        for status in statuses:
            if _plain(status["content"]) in wanted:
                return PublishResult(remote_id=str(status["id"]), url=status.get("url"))
        # Not found: re-sending is safe within the hour thanks to the Idempotency-Key.
        return None
