"""X (Twitter) through tweepy's API v2 client, OAuth 1.0a user context.

tweepy hard-codes its host and sets no timeout, so the requests session is given both
(``transport.configure_session``). ``wait_on_rate_limit`` stays off: it ignores X's 24-hour
headers and would block the worker; delivery pauses the channel instead. X has no
idempotency key, so a post whose outcome is unknown is looked for among the account's
recent posts before it is sent again.
"""

from __future__ import annotations

import email.utils
import html
import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
import tweepy

from ..clock import utcnow
from ..config import ChannelConfig
from ..textfit import LengthRule, rule_for
from .base import (
    Channel,
    ChannelUnhealthy,
    PublishRequest,
    PublishResult,
    RateLimited,
    Rejected,
    RepliesRefused,
    TransientError,
)
from .transport import configure_session

log = logging.getLogger("broadcaster.channels.x")

DUPLICATE = "duplicate content"
# How long a "duplicate content" refusal is taken for our own post not yet visible in the
# timeline (X's timeline lags its duplicate check) before the post is recorded as failed.
# Counted in time, not attempts: earlier network failures must not use it up.
DUPLICATE_PATIENCE = timedelta(minutes=10)
# How far X's clock may run behind ours when we compare a post's creation time.
CLOCK_SKEW = timedelta(minutes=5)
REPLY_REFUSED = "reply to this conversation is not allowed"
# X refuses an over-long text with a 403, not a 400: it concerns this post, not the account.
TOO_LONG = "too long"
REPLY_PARAMETER = "in_reply_to_tweet_id"
# The Date header has a one-second resolution: smaller differences are not clock skew.
MIN_SKEW = timedelta(seconds=2)
_URL = re.compile(r"https?://\S+")


class ParentGone(Rejected):
    """The post replied to no longer exists (deleted): this post can still go standalone."""


def _normalized(text: str) -> str:
    # X returns text HTML-escaped and with links rewritten to t.co: compare what remains.
    return " ".join(_URL.sub("<url>", html.unescape(text)).split())


def _detail(e: tweepy.HTTPException) -> str:
    try:
        body = e.response.json()
    except ValueError:
        return str(e.response.text)[:200]
    if isinstance(body, dict):
        if body.get("detail"):
            return str(body["detail"])
        errors = body.get("errors") or []
        if errors and isinstance(errors[0], dict):
            return str(errors[0].get("message") or errors[0].get("detail") or "")
    return str(body)[:200]


def _epoch(value: str | None) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value), UTC) if value else None
    except ValueError:
        return None


def _skew(headers: Any, now: datetime) -> timedelta:
    """How far our clock is ahead of X's, from the Date header (zero when unknown)."""
    try:
        server = email.utils.parsedate_to_datetime(headers.get("date") or "")
    except (TypeError, ValueError):
        return timedelta(0)
    if server.tzinfo is None:
        return timedelta(0)
    skew = now - server
    return skew if abs(skew) >= MIN_SKEW else timedelta(0)


def _pause_until(headers: Any, now: datetime) -> datetime | None:
    """The time before which posting is pointless, from the 15-minute and 24-hour headers.

    Resets are X's epoch seconds; they are moved onto our clock with the Date header (as
    Mastodon.py does), so a skewed local clock neither hammers X nor sleeps for hours.
    """
    until: datetime | None = None
    # The app's 24-hour cap is shared by every account (channel) posting through the app.
    for prefix in ("x-rate-limit", "x-user-limit-24hour", "x-app-limit-24hour"):
        if headers.get(f"{prefix}-remaining") == "0":
            reset = _epoch(headers.get(f"{prefix}-reset"))
            if reset is not None and (until is None or reset > until):
                until = reset
    return until + _skew(headers, now) if until is not None else None


def _parameter_errors(e: tweepy.HTTPException) -> set[str]:
    """The request parameters X names in a 400 body (``errors[].parameters``)."""
    try:
        body = e.response.json()
    except ValueError:
        return set()
    errors = body.get("errors") if isinstance(body, dict) else None
    names: set[str] = set()
    for error in errors if isinstance(errors, list) else []:
        if isinstance(error, dict) and isinstance(error.get("parameters"), dict):
            names.update(error["parameters"])
    return names


class XChannel(Channel):
    platform = "x"

    def __init__(self, config: ChannelConfig) -> None:
        self.name = config.name
        self.language = config.language
        self.config = config
        creds = {k: v.reveal() for k, v in config.credentials.items()}
        self.client = tweepy.Client(
            consumer_key=creds.get("consumer_key"),
            consumer_secret=creds.get("consumer_secret"),
            access_token=creds.get("access_token"),
            access_token_secret=creds.get("access_token_secret"),
            return_type=requests.Response,  # we need the rate-limit headers of successes too
            wait_on_rate_limit=False,
        )
        configure_session(
            self.client.session,
            config.api_base_url or "https://api.x.com",
            config.timeout.total_seconds(),
        )
        self._rule = rule_for("x", config.max_characters)
        self._user_id: str | None = None

    def length_rule(self) -> LengthRule:
        return self._rule

    def close(self) -> None:
        self.client.session.close()

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> requests.Response:
        try:
            response: requests.Response = fn(*args, **kwargs)
            return response
        except requests.RequestException as e:
            raise TransientError(f"network: {type(e).__name__}") from None
        except tweepy.TooManyRequests as e:
            now = utcnow()
            until = _pause_until(e.response.headers, now) or now + timedelta(minutes=15)
            raise RateLimited(f"429 {_detail(e)}", until=until) from None
        except tweepy.Unauthorized as e:
            raise ChannelUnhealthy(f"401 credentials refused: {_detail(e)}", status=401) from None
        except tweepy.Forbidden as e:
            detail = _detail(e)
            if DUPLICATE in detail.lower() or TOO_LONG in detail.lower():
                raise Rejected(f"403 {detail}", status=403) from None
            if REPLY_REFUSED in detail.lower():
                raise RepliesRefused(f"403 {detail}", status=403) from None
            raise ChannelUnhealthy(f"403 {detail}", status=403) from None
        except tweepy.BadRequest as e:
            if REPLY_PARAMETER in " ".join(_parameter_errors(e)):
                raise ParentGone(f"400 {_detail(e)}", status=400) from None
            raise Rejected(f"400 {_detail(e)}", status=400) from None
        except tweepy.TwitterServerError as e:
            raise TransientError(
                f"{e.response.status_code} server error", status=e.response.status_code
            ) from None
        except tweepy.HTTPException as e:
            status = e.response.status_code
            if status == 402:
                raise ChannelUnhealthy(f"402 credits exhausted: {_detail(e)}", status=402) from None
            raise TransientError(f"{status} {_detail(e)}", status=status) from None

    def publish(self, request: PublishRequest) -> PublishResult:
        text = request.text
        reply_to = request.in_reply_to
        if request.replies_refused and reply_to is not None:
            reply_to = None
            text = self._with_thread_link(text, request)
        try:
            try:
                response = self._call(
                    self.client.create_tweet, text=text, in_reply_to_tweet_id=reply_to
                )
            except ParentGone as e:
                # Someone deleted the post we reply to. Replying to it would fail for every
                # later post of the thread too; go on standalone and the thread continues
                # from this post.
                log.warning(
                    "%s: parent of %s is gone (%s); posting it standalone",
                    self.name,
                    request.idempotency_key,
                    e,
                )
                if request.thread_root != reply_to:
                    text = self._with_thread_link(text, request)
                response = self._call(self.client.create_tweet, text=text)
        except Rejected as e:
            if DUPLICATE in str(e).lower():
                # Our texts are unique, so a duplicate is our own post whose answer was lost.
                found = self.find_published(request)
                if found is not None:
                    return found
                if utcnow() - request.post.planned_at < DUPLICATE_PATIENCE:
                    # X's timeline can lag behind its duplicate check: look again later
                    # rather than record as failed a post that is probably published.
                    raise TransientError(
                        f"{e}; not yet in the timeline, looking again later", status=403
                    ) from None
            raise
        data = response.json()["data"]
        return PublishResult(
            remote_id=str(data["id"]),
            url=self._url(str(data["id"])),
            not_before=_pause_until(response.headers, utcnow()),
        )

    def _with_thread_link(self, text: str, request: PublishRequest) -> str:
        if not request.thread_root:
            return text
        linked = f"{text}\n{self._url(request.thread_root)}"
        return linked if self._rule.fits(linked) else text

    def _url(self, tweet_id: str) -> str:
        return f"https://x.com/i/status/{tweet_id}"

    def user_id(self) -> str:
        if self._user_id is None:
            me = self._call(self.client.get_me, user_auth=True).json()["data"]
            self._user_id = str(me["id"])
        return self._user_id

    def find_published(self, request: PublishRequest) -> PublishResult | None:
        # Our own texts, as sent: plain, or standalone with the thread's link appended.
        wanted = {_normalized(request.text)}
        if request.thread_root:
            wanted.add(_normalized(self._with_thread_link(request.text, request)))
        response = self._call(
            self.client.get_users_tweets,
            self.user_id(),
            user_auth=True,
            max_results=100,
            tweet_fields=["created_at", "referenced_tweets"],
        )
        # Two threads can hold identical parts ("(2/3)" of two incidents with the same
        # message): ours replies to our parent and was written after we planned it.
        parents = {request.in_reply_to, None}
        not_before = request.post.planned_at - CLOCK_SKEW
        for tweet in response.json().get("data") or []:
            replied_to = next(
                (
                    r["id"]
                    for r in tweet.get("referenced_tweets") or []
                    if r.get("type") == "replied_to"
                ),
                None,
            )
            created = tweet.get("created_at")
            if replied_to not in parents:
                continue
            if created and datetime.fromisoformat(created.replace("Z", "+00:00")) < not_before:
                continue
            # Exact, not a prefix: a longer post that merely starts like this one is another
            # post, and adopting it would leave this one unpublished.
            if _normalized(tweet["text"]) in wanted:
                log.info(
                    "%s: found %s already published as %s",
                    self.name,
                    request.idempotency_key,
                    tweet["id"],
                )
                return PublishResult(remote_id=str(tweet["id"]), url=self._url(str(tweet["id"])))
        return None
