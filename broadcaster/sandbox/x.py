"""A local X API v2 server for tests, benchmarks and ops drills.

Speaks enough of the real protocol that the unmodified ``tweepy.Client`` works against it
(through ``broadcaster.channels.transport.configure_session``): OAuth 1.0a HMAC-SHA1
user-context signatures checked with oauthlib, X's problem+json error bodies, the
``x-rate-limit-*`` and ``x-user-limit-24hour-*`` headers, duplicate-content and
over-length refusals, refused replies and exhausted credits.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from oauthlib.oauth1.rfc5849 import utils as oauth_utils
from twitter_text import parse_tweet

from .faults import FaultDecision, Faults
from .http import (
    Clock,
    FixedWindows,
    Post,
    PostStore,
    Request,
    Response,
    SandboxServer,
    SnowflakeIds,
    WindowState,
    utc_iso,
)
from .page import render_threads
from .xauth import DEFAULT_X_ACCOUNT, X_PUBLIC_BASE_URLS, XAccount, signature_valid

TWITTER_EPOCH_MS = 1288834974657

POST_TWEETS = "POST /2/tweets"
POST_TWEETS_24H = "POST /2/tweets 24h"
POST_TWEETS_APP_24H = "POST /2/tweets app 24h"
GET_ME = "GET /2/users/me"
GET_USER_TWEETS = "GET /2/users/:id/tweets"
GET_TWEET = "GET /2/tweets/:id"
DELETE_TWEET = "DELETE /2/tweets/:id"

FIFTEEN_MINUTES = 15 * 60.0
ONE_DAY = 24 * 3600.0

# Per-user 15-minute limits from X's documentation; POST /2/tweets and the 24-hour
# user limit come from the constructor because tests and benchmarks tune them.
DEFAULT_ENDPOINT_LIMITS: Mapping[str, int] = {
    GET_ME: 75,
    GET_USER_TWEETS: 900,
    GET_TWEET: 900,
    DELETE_TWEET: 50,
}

REPLY_REFUSED_DETAIL = (
    "Reply to this conversation is not allowed because you have not been mentioned or "
    "otherwise engaged by the author of the post you are replying to."
)
DUPLICATE_DETAIL = "You are not allowed to create a Tweet with duplicate content."
TOO_LONG_DETAIL = (
    "Your Tweet text is too long. For more information on how X determines text length, "
    "see https://github.com/twitter/twitter-text."
)
INVALID_REQUEST_TYPE = "https://api.twitter.com/2/problems/invalid-request"

_REASONS = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def _problem(status: int, title: str, detail: str, type_: str = "about:blank") -> dict[str, Any]:
    return {"title": title, "detail": detail, "type": type_, "status": status}


def _invalid_request(parameter: str, value: str, message: str) -> dict[str, Any]:
    return {
        "errors": [{"parameters": {parameter: [value]}, "message": message}],
        "title": "Invalid Request",
        "detail": "One or more parameters to your request was invalid.",
        "type": INVALID_REQUEST_TYPE,
    }


@dataclass(frozen=True)
class _Caller:
    """Who is calling: a user (OAuth 1.0a or OAuth 2.0 user token) or an app-only token."""

    account: XAccount | None
    app_token: str | None = None

    @property
    def rate_key(self) -> str:
        return self.account.user_id if self.account else f"app:{self.app_token}"


class XSandbox(SandboxServer):
    """Local X API v2: ``POST /2/tweets``, ``GET /2/users/me``, ``GET /2/users/:id/tweets``,
    ``GET /2/tweets/:id``, ``DELETE /2/tweets/:id``, and ``GET /`` (HTML view).

    Switches (``replies_refused``, ``credits_exhausted``) and limits can be changed while
    the server runs. With no ``accounts`` it serves ``DEFAULT_X_ACCOUNT``.
    """

    platform = "x"

    def __init__(
        self,
        *,
        accounts: Sequence[XAccount] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock = time.time,
        faults: Faults | None = None,
        post_limit: int = 100,
        daily_post_limit: int = 17,
        app_daily_post_limit: int | None = None,
        endpoint_limits: Mapping[str, int] | None = None,
        public_base_urls: Iterable[str] = X_PUBLIC_BASE_URLS,
        app_bearer_tokens: Iterable[str] = (),
        max_weighted_length: int = 280,
        check_nonces: bool = True,
        developer_account_id: str = "1700000000000000000",
    ) -> None:
        super().__init__(host=host, port=port, clock=clock, faults=faults)
        self._accounts = tuple(accounts) if accounts else (DEFAULT_X_ACCOUNT,)
        self._by_tokens = {(a.consumer_key, a.access_token): a for a in self._accounts}
        self._by_bearer = {a.bearer_token: a for a in self._accounts if a.bearer_token}
        self._by_id = {a.user_id: a for a in self._accounts}
        self._by_username = {a.username.lower(): a for a in self._accounts}
        if len(self._by_tokens) != len(self._accounts) or len(self._by_id) != len(self._accounts):
            raise ValueError("X sandbox accounts need distinct tokens and user ids")
        self._app_tokens = frozenset(app_bearer_tokens)
        self.public_base_urls = tuple(u.rstrip("/") for u in public_base_urls)
        self.max_weighted_length = max_weighted_length
        self.check_nonces = check_nonces
        self.developer_account_id = developer_account_id
        limits = {**DEFAULT_ENDPOINT_LIMITS, **(endpoint_limits or {})}
        limits[POST_TWEETS] = post_limit
        self._windows: dict[str, FixedWindows] = {
            name: FixedWindows(limit, FIFTEEN_MINUTES) for name, limit in limits.items()
        }
        self._windows[POST_TWEETS_24H] = FixedWindows(daily_post_limit, ONE_DAY)
        # X's per-app cap (every account posting through one app's consumer key): off
        # unless given, as most apps never reach it.
        if app_daily_post_limit is not None:
            self._windows[POST_TWEETS_APP_24H] = FixedWindows(app_daily_post_limit, ONE_DAY)
        self._ids = SnowflakeIds(clock, epoch_ms=TWITTER_EPOCH_MS, shift=22)
        self._store = PostStore()
        self._authors: dict[str, str] = {}  # tweet id → user id
        self._nonces: set[tuple[str, str, str]] = set()
        self._replies_refused = False
        self._credits_exhausted = False

    # -- switches and settings -----------------------------------------------------------

    @property
    def accounts(self) -> tuple[XAccount, ...]:
        return self._accounts

    @property
    def replies_refused(self) -> bool:
        return self._replies_refused

    @replies_refused.setter
    def replies_refused(self, value: bool) -> None:
        with self._lock:
            self._replies_refused = value

    @property
    def credits_exhausted(self) -> bool:
        return self._credits_exhausted

    @credits_exhausted.setter
    def credits_exhausted(self, value: bool) -> None:
        with self._lock:
            self._credits_exhausted = value

    def set_rate_limit(self, endpoint: str, limit: int, period: float | None = None) -> None:
        """Change one limit at run time; ``endpoint`` is e.g. ``"POST /2/tweets"`` or
        ``"POST /2/tweets 24h"``. Counters already spent in the current window stay."""
        with self._lock:
            window = self._windows[endpoint]
            window.limit = limit
            if period is not None:
                window.period = period

    def reset_rate_limits(self) -> None:
        with self._lock:
            for window in self._windows.values():
                window.clear()

    # -- records -------------------------------------------------------------------------

    def posts(self) -> list[Post]:
        with self._lock:
            return self._store.all()

    def threads(self) -> dict[str, list[Post]]:
        with self._lock:
            return self._store.threads()

    def add_post(
        self, text: str, *, account: XAccount | str | None = None, in_reply_to: str | None = None
    ) -> Post:
        """Create a post directly (no HTTP, no limits): history that existed beforehand."""
        with self._changed:
            author = self._account_for(account)
            post = self._create(author, text, in_reply_to)
            self._changed.notify_all()
            return post

    def _account_for(self, account: XAccount | str | None) -> XAccount:
        if account is None:
            return self._accounts[0]
        if isinstance(account, XAccount):
            return account
        return self._by_username[account.lower().lstrip("@")]

    # -- authentication ------------------------------------------------------------------

    def _authenticate(self, request: Request, *, remember_nonce: bool = True) -> _Caller | None:
        header = request.header("authorization") or ""
        if header[:7].lower() == "bearer ":
            token = header[7:].strip()
            if token in self._by_bearer:
                return _Caller(self._by_bearer[token])
            if token in self._app_tokens:
                return _Caller(None, app_token=token)
            return None
        if header[:6].lower() != "oauth ":
            return None
        try:
            pairs = oauth_utils.parse_authorization_header(header)
            oauth = {key: oauth_utils.unescape(value) for key, value in pairs}
        except ValueError:
            return None
        if oauth.get("oauth_signature_method") != "HMAC-SHA1":
            return None
        tokens = (oauth.get("oauth_consumer_key", ""), oauth.get("oauth_token", ""))
        account = self._by_tokens.get(tokens)
        if account is None or not self._verify_signature(request, header, oauth, account):
            return None
        if self.check_nonces:
            # X refuses a replayed nonce; a client that re-sends the very same signed
            # request (instead of re-signing) must see the 401 it would get in production.
            nonce = (
                account.access_token,
                oauth.get("oauth_timestamp", ""),
                oauth.get("oauth_nonce", ""),
            )
            if nonce in self._nonces:
                return None
            if remember_nonce:
                self._nonces.add(nonce)
        return _Caller(account)

    def _verify_signature(
        self, request: Request, header: str, oauth: Mapping[str, str], account: XAccount
    ) -> bool:
        # tweepy signs for https://api.twitter.com/...; see xauth.signature_valid. The Host
        # header covers clients that address the sandbox as localhost rather than 127.0.0.1.
        candidates = [self.base_url, *self.public_base_urls]
        if request.header("host"):
            candidates.insert(1, f"http://{request.header('host')}")
        return signature_valid(request, header, oauth, account, candidates)

    # -- rate limits ---------------------------------------------------------------------

    @staticmethod
    def _limit_headers(state: WindowState) -> list[tuple[str, str]]:
        return [
            ("x-rate-limit-limit", str(state.limit)),
            ("x-rate-limit-remaining", str(state.remaining)),
            ("x-rate-limit-reset", str(math.ceil(state.reset))),
        ]

    @staticmethod
    def _daily_headers(state: WindowState) -> list[tuple[str, str]]:
        return [
            ("x-user-limit-24hour-limit", str(state.limit)),
            ("x-user-limit-24hour-remaining", str(state.remaining)),
            ("x-user-limit-24hour-reset", str(math.ceil(state.reset))),
        ]

    def _peek_headers(self, endpoint: str, key: str) -> list[tuple[str, str]]:
        now = self.clock()
        headers = self._limit_headers(self._windows[endpoint].peek(key, now))
        if endpoint == POST_TWEETS:
            headers += self._daily_headers(self._windows[POST_TWEETS_24H].peek(key, now))
        return headers

    def _consume(
        self, endpoint: str, key: str, app: str | None = None
    ) -> tuple[bool, list[tuple[str, str]]]:
        """Count one request; False (and nothing counted) if a limit is already spent.
        ``app`` (the consumer key) counts posts against the app's 24-hour cap, if set."""
        now = self.clock()
        windows = [(endpoint, key)]
        if endpoint == POST_TWEETS:
            windows.append((POST_TWEETS_24H, key))
            if app is not None and POST_TWEETS_APP_24H in self._windows:
                windows.append((POST_TWEETS_APP_24H, app))
        states = [self._windows[name].peek(k, now) for name, k in windows]
        allowed = not any(state.exhausted for state in states)
        if allowed:
            states = [self._windows[name].hit(k, now) for name, k in windows]
        headers = self._limit_headers(states[0])
        if len(states) > 1:
            headers += self._daily_headers(states[1])
        if len(states) > 2:
            headers += [
                ("x-app-limit-24hour-limit", str(states[2].limit)),
                ("x-app-limit-24hour-remaining", str(states[2].remaining)),
                ("x-app-limit-24hour-reset", str(math.ceil(states[2].reset))),
            ]
        return allowed, headers

    # -- routing -------------------------------------------------------------------------

    def _endpoint(self, request: Request) -> tuple[str | None, str | None]:
        parts = request.path.strip("/").split("/")
        method = request.method
        if parts == ["2", "tweets"] and method == "POST":
            return POST_TWEETS, None
        if parts == ["2", "users", "me"] and method in ("GET", "HEAD"):
            return GET_ME, None
        is_timeline = len(parts) == 4 and parts[:2] == ["2", "users"] and parts[3] == "tweets"
        if is_timeline and method in ("GET", "HEAD"):
            return GET_USER_TWEETS, parts[2]
        if len(parts) == 3 and parts[:2] == ["2", "tweets"]:
            if method == "DELETE":
                return DELETE_TWEET, parts[2]
            if method in ("GET", "HEAD"):
                return GET_TWEET, parts[2]
        return None, None

    def _is_posting(self, request: Request) -> bool:
        return self._endpoint(request)[0] == POST_TWEETS

    def _route(self, request: Request) -> Response:
        if request.path == "/" and request.method in ("GET", "HEAD"):
            return self._page()
        endpoint, arg = self._endpoint(request)
        if endpoint is None:
            return Response.json(
                404, _problem(404, "Not Found Error", "Sorry, that page does not exist")
            )
        caller = self._authenticate(request)
        if caller is None:
            headers = self._peek_headers(endpoint, f"ip:{request.client}")
            return Response.json(401, _problem(401, "Unauthorized", "Unauthorized"), headers)
        if caller.account is None and endpoint not in (GET_USER_TWEETS, GET_TWEET):
            return Response.json(
                403,
                _problem(
                    403,
                    "Unsupported Authentication",
                    "Authenticating with OAuth 2.0 Application-Only is forbidden for this "
                    "endpoint.  Supported authentication types are [OAuth 1.0a User Context, "
                    "OAuth 2.0 User Context].",
                    "https://api.twitter.com/2/problems/unsupported-authentication",
                ),
            )
        if self._credits_exhausted:
            return Response.json(
                402,
                {
                    "title": "CreditsDepleted",
                    "detail": f"Your enrolled account [{self.developer_account_id}] does not "
                    "have any credits to fulfill this request.",
                    "type": "https://api.twitter.com/2/problems/credits",
                },
                self._peek_headers(endpoint, caller.rate_key),
            )
        app = caller.account.consumer_key if caller.account is not None else None
        allowed, headers = self._consume(endpoint, caller.rate_key, app)
        if not allowed:
            return Response.json(429, _too_many_requests(), headers)
        if endpoint == POST_TWEETS:
            assert caller.account is not None
            response = self._create_tweet(request, caller.account)
        elif endpoint == GET_ME:
            assert caller.account is not None
            me = caller.account
            user = {"id": me.user_id, "name": me.name, "username": me.username}
            response = Response.json(200, {"data": user})
        elif endpoint == GET_USER_TWEETS:
            response = self._user_tweets(request, arg or "")
        elif endpoint == GET_TWEET:
            response = self._get_tweet(request, arg or "")
        else:
            assert caller.account is not None
            response = self._delete_tweet(caller.account, arg or "")
        return response.with_headers(headers)

    # -- endpoints -----------------------------------------------------------------------

    def _create_tweet(self, request: Request, account: XAccount) -> Response:
        try:
            body = json.loads(request.body or b"{}")
            if not isinstance(body, dict):
                raise ValueError("body is not an object")
        except ValueError:
            return Response.json(
                400,
                {
                    "errors": [{"message": "Request body is not valid JSON"}],
                    "title": "Invalid Request",
                    "detail": "One or more parameters to your request was invalid.",
                    "type": INVALID_REQUEST_TYPE,
                },
            )
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            return Response.json(
                400, _invalid_request("text", str(text or ""), "$.text: must not be empty")
            )
        if parse_tweet(text).weightedLength > self.max_weighted_length:
            return Response.json(403, _problem(403, "Forbidden", TOO_LONG_DETAIL))
        reply = body.get("reply") or {}
        parent_id = reply.get("in_reply_to_tweet_id") if isinstance(reply, dict) else None
        if parent_id is not None:
            parent_id = str(parent_id)
            parent = self._store.get(parent_id)
            if parent is None or parent.deleted:
                return Response.json(
                    400,
                    _invalid_request(
                        "reply.in_reply_to_tweet_id",
                        parent_id,
                        f"The `reply.in_reply_to_tweet_id` query parameter value [{parent_id}] "
                        "does not exist",
                    ),
                )
            if self._replies_refused:
                return Response.json(403, _problem(403, "Forbidden", REPLY_REFUSED_DETAIL))
        if any(
            p.text == text and not p.deleted and self._authors[p.id] == account.user_id
            for p in self._store.all()
        ):
            return Response.json(403, _problem(403, "Forbidden", DUPLICATE_DETAIL))
        post = self._create(account, text, parent_id)
        return Response.json(
            201, {"data": {"id": post.id, "text": post.text, "edit_history_tweet_ids": [post.id]}}
        )

    def _create(self, account: XAccount, text: str, in_reply_to: str | None) -> Post:
        post = Post(
            id=self._ids.next(),
            account=account.username,
            text=text,
            in_reply_to=in_reply_to,
            created_at=self.clock(),
        )
        self._store.add(post)
        self._authors[post.id] = account.user_id
        return post

    def _tweet_json(self, post: Post, fields: set[str]) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": post.id,
            "text": post.text,
            "edit_history_tweet_ids": [post.id],
        }
        if "created_at" in fields:
            data["created_at"] = utc_iso(post.created_at)
        if "author_id" in fields:
            data["author_id"] = self._authors[post.id]
        if "conversation_id" in fields:
            data["conversation_id"] = self._store.root_of(post).id
        if post.in_reply_to is not None:
            if "in_reply_to_user_id" in fields and post.in_reply_to in self._authors:
                data["in_reply_to_user_id"] = self._authors[post.in_reply_to]
            if "referenced_tweets" in fields:
                data["referenced_tweets"] = [{"type": "replied_to", "id": post.in_reply_to}]
        return data

    @staticmethod
    def _fields(request: Request) -> set[str]:
        raw = request.param("tweet.fields") or ""
        return {f.strip() for f in raw.split(",") if f.strip()}

    def _user_tweets(self, request: Request, user_id: str) -> Response:
        raw_max = request.param("max_results")
        max_results = 10
        if raw_max is not None:
            if not raw_max.isdigit() or not 5 <= int(raw_max) <= 100:
                return Response.json(
                    400,
                    _invalid_request(
                        "max_results",
                        raw_max,
                        f"The `max_results` query parameter value [{raw_max}] is not between "
                        "5 and 100",
                    ),
                )
            max_results = int(raw_max)
        if user_id not in self._by_id:
            return Response.json(
                200,
                {
                    "errors": [
                        {
                            "value": user_id,
                            "detail": f"Could not find user with id: [{user_id}].",
                            "title": "Not Found Error",
                            "resource_type": "user",
                            "parameter": "id",
                            "resource_id": user_id,
                            "type": "https://api.twitter.com/2/problems/resource-not-found",
                        }
                    ]
                },
            )
        tweets = [
            p
            for p in reversed(self._store.all())
            if not p.deleted and self._authors[p.id] == user_id
        ]
        excluded = {e.strip() for e in (request.param("exclude") or "").split(",")}
        if "replies" in excluded:
            tweets = [p for p in tweets if p.in_reply_to is None]
        for name in ("since_id", "until_id"):
            value = request.param(name)
            if value is None:
                continue
            if not value.isdigit():
                message = f"The `{name}` query parameter value [{value}] is not valid"
                return Response.json(400, _invalid_request(name, value, message))
            bound = int(value)
            if name == "since_id":
                tweets = [p for p in tweets if int(p.id) > bound]
            else:
                tweets = [p for p in tweets if int(p.id) < bound]
        token = request.param("pagination_token")
        if token is not None:
            older_than = _decode_token(token)
            if older_than is None:
                return Response.json(
                    400,
                    _invalid_request(
                        "pagination_token",
                        token,
                        f"The `pagination_token` query parameter value [{token}] is not valid",
                    ),
                )
            tweets = [p for p in tweets if int(p.id) < older_than]
        page, rest = tweets[:max_results], tweets[max_results:]
        meta: dict[str, Any] = {"result_count": len(page)}
        payload: dict[str, Any] = {}
        if page:
            fields = self._fields(request)
            payload["data"] = [self._tweet_json(p, fields) for p in page]
            meta["newest_id"] = page[0].id
            meta["oldest_id"] = page[-1].id
            if rest:
                meta["next_token"] = _encode_token(int(page[-1].id))
        payload["meta"] = meta
        return Response.json(200, payload)

    def _get_tweet(self, request: Request, tweet_id: str) -> Response:
        post = self._store.get(tweet_id)
        if post is None or post.deleted:
            return Response.json(
                200,
                {
                    "errors": [
                        {
                            "value": tweet_id,
                            "detail": f"Could not find tweet with id: [{tweet_id}].",
                            "title": "Not Found Error",
                            "resource_type": "tweet",
                            "parameter": "id",
                            "resource_id": tweet_id,
                            "type": "https://api.twitter.com/2/problems/resource-not-found",
                        }
                    ]
                },
            )
        return Response.json(200, {"data": self._tweet_json(post, self._fields(request))})

    def _delete_tweet(self, account: XAccount, tweet_id: str) -> Response:
        post = self._store.get(tweet_id)
        if post is None or post.deleted:
            detail = f"Could not find tweet with id: [{tweet_id}]."
            return Response.json(404, _problem(404, "Not Found Error", detail))
        if self._authors[tweet_id] != account.user_id:
            return Response.json(
                403, _problem(403, "Forbidden", "You are not allowed to delete this Tweet.")
            )
        self._store.mark_deleted(tweet_id)
        return Response.json(200, {"data": {"deleted": True}})

    # -- faults and the page -------------------------------------------------------------

    def _fault_response(self, request: Request, decision: FaultDecision) -> Response:
        if decision.action == "rate_limit":
            with self._lock:
                endpoint = self._endpoint(request)[0] or POST_TWEETS
                caller = self._authenticate(request, remember_nonce=False)
                key = caller.rate_key if caller else "anonymous"
                headers = [
                    (name, "0" if name.endswith("-remaining") else value)
                    for name, value in self._peek_headers(endpoint, key)
                ]
            return Response.json(429, _too_many_requests(), headers)
        status = decision.status or 503
        reason = _REASONS.get(status, "Server Error")
        return Response.json(status, _problem(status, reason, reason))

    def _page(self) -> Response:
        notes = [
            "Accounts: " + ", ".join(f"@{a.username} (id {a.user_id})" for a in self._accounts),
            f"Replies refused: {self._replies_refused} · credits exhausted: "
            f"{self._credits_exhausted} · pending faults: {self.faults.pending()}",
        ]
        return Response.html(
            200,
            render_threads(
                title=f"X sandbox — {self.base_url}", threads=self._store.threads(), notes=notes
            ),
        )


def _too_many_requests() -> dict[str, Any]:
    return _problem(429, "Too Many Requests", "Too Many Requests")


def _encode_token(tweet_id: int) -> str:
    # Opaque to clients, like X's; it just carries the id to continue below.
    return "o" + format(tweet_id, "x")


def _decode_token(token: str) -> int | None:
    if len(token) < 2 or token[0] != "o":
        return None
    try:
        return int(token[1:], 16)
    except ValueError:
        return None
