"""A local Mastodon server (the client API subset the daemon uses) for tests and drills.

Compatible with the unmodified ``mastodon.Mastodon`` client: Bearer tokens, the
``Idempotency-Key`` header, Mastodon's own status length counting, ``{"error": ...}``
bodies, ``X-RateLimit-*`` headers with ISO 8601 reset times, and ``Link`` pagination.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import parse_qs

import regex
from twitter_text.extract_urls import extract_urls_with_indices

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

URL_PLACEHOLDER = "x" * 23  # Mastodon counts every URL as 23 characters
VISIBILITIES = ("public", "unlisted", "private", "direct")

# Mastodon's Account::MENTION_RE: @user or @user@domain, not inside a word or URL.
_MENTION_RE = regex.compile(
    r"(?<![=/\w])@(([a-z0-9_]+(?:[.-]+[a-z0-9_]+)*)(?:@[\w.-]+\w+)?)", regex.IGNORECASE
)
_GRAPHEME_RE = regex.compile(r"\X")


def countable_text(text: str) -> str:
    """The text Mastodon's StatusLengthValidator counts: URLs become 23 placeholder
    characters and ``@user@domain`` becomes ``@user``."""
    if not text:
        return ""
    entities: list[tuple[int, int, str]] = [
        (u["indices"][0], u["indices"][1], URL_PLACEHOLDER)
        for u in extract_urls_with_indices(text, extract_urls_without_protocol=False)
    ]
    entities += [(m.start(), m.end(), "@" + m.group(2)) for m in _MENTION_RE.finditer(text)]
    entities.sort()
    out: list[str] = []
    position = 0
    for start, end, replacement in entities:
        if start < position:  # overlapping entity (a mention inside a URL): first one wins
            continue
        out.append(text[position:start])
        out.append(replacement)
        position = end
    out.append(text[position:])
    return "".join(out)


def status_length(text: str, spoiler_text: str = "") -> int:
    """Grapheme clusters of spoiler text plus the countable status text, as Mastodon does."""
    return len(_GRAPHEME_RE.findall(spoiler_text + countable_text(text)))


def _html_content(text: str) -> str:
    paragraphs = [p for p in text.replace("\r\n", "\n").split("\n\n") if p.strip()]
    return "".join(
        "<p>" + "<br />".join(escape(line) for line in p.split("\n")) + "</p>" for p in paragraphs
    )


def _truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "on", "yes")


@dataclass(frozen=True)
class MastodonAccount:
    access_token: str
    username: str
    id: str
    display_name: str = "Status (sandbox)"


DEFAULT_MASTODON_ACCOUNT = MastodonAccount(
    access_token="sandbox-mastodon-token",
    username="status",
    id="109000000000000001",
)


@dataclass(frozen=True)
class _StatusExtra:
    """What the Post record does not carry but the Status entity needs."""

    account_id: str
    visibility: str
    spoiler_text: str
    sensitive: bool


class MastodonSandbox(SandboxServer):
    """Local Mastodon: ``GET /api/v1/instance``, ``GET /api/v2/instance``,
    ``GET /api/v1/accounts/verify_credentials``, ``POST /api/v1/statuses``,
    ``GET|DELETE /api/v1/statuses/:id``, ``GET /api/v1/accounts/:id/statuses`` and
    ``GET /`` (HTML view). With no ``accounts`` it serves ``DEFAULT_MASTODON_ACCOUNT``.
    """

    platform = "mastodon"

    def __init__(
        self,
        *,
        accounts: Sequence[MastodonAccount] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock = time.time,
        faults: Faults | None = None,
        version: str = "4.3.0",
        title: str = "Broadcaster sandbox",
        max_characters: int = 500,
        request_limit: int = 300,
        request_period: float = 5 * 60.0,
        status_limit: int = 300,
        status_period: float = 3 * 3600.0,
        idempotency_ttl: float = 3600.0,
    ) -> None:
        super().__init__(host=host, port=port, clock=clock, faults=faults)
        self._accounts = tuple(accounts) if accounts else (DEFAULT_MASTODON_ACCOUNT,)
        self._by_token = {a.access_token: a for a in self._accounts}
        self._by_id = {a.id: a for a in self._accounts}
        self._by_username = {a.username.lower(): a for a in self._accounts}
        if len(self._by_token) != len(self._accounts) or len(self._by_id) != len(self._accounts):
            raise ValueError("Mastodon sandbox accounts need distinct tokens and ids")
        self.version = version
        self.title = title
        self.max_characters = max_characters
        self.idempotency_ttl = idempotency_ttl
        # rack-attack and Mastodon's RateLimiter both count in epoch-aligned windows.
        self._requests = FixedWindows(request_limit, request_period, aligned=True)
        self._statuses = FixedWindows(status_limit, status_period, aligned=True)
        self._ids = SnowflakeIds(clock, epoch_ms=0, shift=16)
        self._store = PostStore()
        self._extra: dict[str, _StatusExtra] = {}
        self._idempotency: dict[tuple[str, str], tuple[str, float]] = {}

    # -- settings ------------------------------------------------------------------------

    @property
    def accounts(self) -> tuple[MastodonAccount, ...]:
        return self._accounts

    @property
    def domain(self) -> str:
        return self.base_url.split("://", 1)[1]

    def set_rate_limits(
        self,
        *,
        request_limit: int | None = None,
        request_period: float | None = None,
        status_limit: int | None = None,
        status_period: float | None = None,
    ) -> None:
        """Change limits at run time; counts already spent in the current window stay."""
        with self._lock:
            if request_limit is not None:
                self._requests.limit = request_limit
            if request_period is not None:
                self._requests.period = request_period
            if status_limit is not None:
                self._statuses.limit = status_limit
            if status_period is not None:
                self._statuses.period = status_period

    def reset_rate_limits(self) -> None:
        with self._lock:
            self._requests.clear()
            self._statuses.clear()

    # -- records -------------------------------------------------------------------------

    def posts(self) -> list[Post]:
        with self._lock:
            return self._store.all()

    def threads(self) -> dict[str, list[Post]]:
        with self._lock:
            return self._store.threads()

    def add_post(
        self,
        text: str,
        *,
        account: MastodonAccount | str | None = None,
        in_reply_to: str | None = None,
        visibility: str = "public",
        language: str | None = None,
    ) -> Post:
        """Create a status directly (no HTTP, no limits): history that existed beforehand."""
        with self._changed:
            if account is None:
                author = self._accounts[0]
            elif isinstance(account, MastodonAccount):
                author = account
            else:
                author = self._by_username[account.lower().lstrip("@")]
            post = self._create(author, text, in_reply_to, visibility, language, "", False, None)
            self._changed.notify_all()
            return post

    # -- JSON entities -------------------------------------------------------------------

    def _account_json(self, account: MastodonAccount, *, source: bool = False) -> dict[str, Any]:
        own = [p for p in self._store.all() if self._extra[p.id].account_id == account.id]
        live = [p for p in own if not p.deleted]
        data: dict[str, Any] = {
            "id": account.id,
            "username": account.username,
            "acct": account.username,
            "display_name": account.display_name,
            "locked": False,
            "bot": True,
            "discoverable": True,
            "indexable": False,
            "group": False,
            "created_at": "2024-01-01T00:00:00.000Z",
            "note": "<p>Incident updates (sandbox).</p>",
            "url": f"{self.base_url}/@{account.username}",
            "uri": f"{self.base_url}/users/{account.username}",
            "avatar": f"{self.base_url}/avatars/original/missing.png",
            "avatar_static": f"{self.base_url}/avatars/original/missing.png",
            "header": f"{self.base_url}/headers/original/missing.png",
            "header_static": f"{self.base_url}/headers/original/missing.png",
            "followers_count": 0,
            "following_count": 0,
            "statuses_count": len(live),
            "last_status_at": utc_iso(live[-1].created_at)[:10] if live else None,
            "hide_collections": False,
            "noindex": False,
            "emojis": [],
            "roles": [],
            "fields": [],
        }
        if source:
            data["source"] = {
                "privacy": "public",
                "sensitive": False,
                "language": None,
                "note": "Incident updates (sandbox).",
                "fields": [],
                "follow_requests_count": 0,
                "hide_collections": False,
                "discoverable": True,
                "indexable": False,
            }
            data["role"] = {
                "id": "-99",
                "name": "",
                "permissions": "65536",
                "color": "",
                "highlighted": False,
            }
        return data

    def _status_json(self, post: Post) -> dict[str, Any]:
        extra = self._extra[post.id]
        account = self._by_id[extra.account_id]
        parent = self._store.get(post.in_reply_to) if post.in_reply_to else None
        replies = sum(1 for p in self._store.all() if p.in_reply_to == post.id and not p.deleted)
        return {
            "id": post.id,
            "created_at": utc_iso(post.created_at),
            "in_reply_to_id": post.in_reply_to,
            "in_reply_to_account_id": self._extra[parent.id].account_id if parent else None,
            "sensitive": extra.sensitive,
            "spoiler_text": extra.spoiler_text,
            "visibility": extra.visibility,
            "language": post.language,
            "uri": f"{self.base_url}/users/{account.username}/statuses/{post.id}",
            "url": f"{self.base_url}/@{account.username}/{post.id}",
            "replies_count": replies,
            "reblogs_count": 0,
            "favourites_count": 0,
            "quotes_count": 0,
            "edited_at": None,
            "favourited": False,
            "reblogged": False,
            "muted": False,
            "bookmarked": False,
            "pinned": False,
            "content": _html_content(post.text),
            "filtered": [],
            "reblog": None,
            "application": {"name": "broadcaster", "website": None},
            "account": self._account_json(account),
            "media_attachments": [],
            "mentions": [],
            "tags": [],
            "emojis": [],
            "card": None,
            "poll": None,
        }

    def _instance_configuration(self) -> dict[str, Any]:
        return {
            "statuses": {
                "max_characters": self.max_characters,
                "max_media_attachments": 4,
                "characters_reserved_per_url": len(URL_PLACEHOLDER),
            },
            "media_attachments": {
                "supported_mime_types": ["image/jpeg", "image/png"],
                "image_size_limit": 16777216,
                "image_matrix_limit": 33177600,
                "video_size_limit": 103809024,
                "video_frame_rate_limit": 120,
                "video_matrix_limit": 8294400,
            },
            "polls": {
                "max_options": 4,
                "max_characters_per_option": 50,
                "min_expiration": 300,
                "max_expiration": 2629746,
            },
        }

    def _instance_v1(self) -> dict[str, Any]:
        configuration = self._instance_configuration()
        configuration["accounts"] = {"max_featured_tags": 10}
        return {
            "uri": self.domain,
            "title": self.title,
            "short_description": "A local Mastodon stand-in for tests and drills.",
            "description": "A local Mastodon stand-in for tests and drills.",
            "email": "ops@example.invalid",
            "version": self.version,
            "urls": {"streaming_api": f"ws://{self.domain}"},
            "stats": {
                "user_count": len(self._accounts),
                "status_count": len(self._store.all()),
                "domain_count": 0,
            },
            "thumbnail": None,
            "languages": ["en"],
            "registrations": False,
            "approval_required": False,
            "invites_enabled": False,
            "configuration": configuration,
            "contact_account": None,
            "rules": [],
        }

    def _instance_v2(self) -> dict[str, Any]:
        configuration = self._instance_configuration()
        configuration["urls"] = {"streaming": f"ws://{self.domain}", "status": None}
        configuration["accounts"] = {"max_featured_tags": 10, "max_pinned_statuses": 5}
        configuration["translation"] = {"enabled": False}
        return {
            "domain": self.domain,
            "title": self.title,
            "version": self.version,
            "source_url": "https://github.com/mastodon/mastodon",
            "description": "A local Mastodon stand-in for tests and drills.",
            "usage": {"users": {"active_month": len(self._accounts)}},
            "thumbnail": {"url": f"{self.base_url}/packs/media/images/preview.png"},
            "languages": ["en"],
            "configuration": configuration,
            "registrations": {"enabled": False, "approval_required": False, "message": None},
            # Mastodon.py warns about a >= 4.3.0 server without API versions.
            "api_versions": {"mastodon": 2},
            "contact": {"email": "ops@example.invalid", "account": None},
            "rules": [],
        }

    # -- helpers -------------------------------------------------------------------------

    @staticmethod
    def _limit_headers(state: WindowState) -> list[tuple[str, str]]:
        return [
            ("X-RateLimit-Limit", str(state.limit)),
            ("X-RateLimit-Remaining", str(state.remaining)),
            ("X-RateLimit-Reset", utc_iso(state.reset, digits=6)),
        ]

    @staticmethod
    def _error(status: int, message: str, headers: list[tuple[str, str]]) -> Response:
        return Response.json(status, {"error": message}, headers)

    def _token(self, request: Request) -> tuple[bool, MastodonAccount | None]:
        """(whether a token was sent, the account it belongs to or None)."""
        header = request.header("authorization") or ""
        if header[:7].lower() != "bearer ":
            return False, None
        return True, self._by_token.get(header[7:].strip())

    def _rate_key(self, request: Request) -> str:
        _, account = self._token(request)
        return f"token:{account.access_token}" if account else f"ip:{request.client}"

    def _form(self, request: Request) -> dict[str, Any]:
        if request.content_type == "application/json":
            data = json.loads(request.body or b"{}")
            if not isinstance(data, dict):
                raise ValueError("body is not an object")
            return data
        if request.content_type == "application/x-www-form-urlencoded":
            pairs = parse_qs(request.body.decode("utf-8"), keep_blank_values=True)
            return {key: values[0] for key, values in pairs.items()}
        if request.body:
            raise ValueError(f"unsupported content type {request.content_type!r}")
        return {}

    # -- routing -------------------------------------------------------------------------

    def _is_posting(self, request: Request) -> bool:
        return request.method == "POST" and request.path == "/api/v1/statuses"

    def _route(self, request: Request) -> Response:
        if request.path == "/" and request.method in ("GET", "HEAD"):
            return self._page()
        sent, account = self._token(request)
        now = self.clock()
        key = self._rate_key(request)  # an invalid token is throttled by address
        if self._requests.peek(key, now).exhausted:
            headers = self._limit_headers(self._requests.peek(key, now))
            return self._error(429, "Too many requests", headers)
        headers = self._limit_headers(self._requests.hit(key, now))
        if sent and account is None:
            return self._error(401, "The access token is invalid", headers)
        parts = request.path.strip("/").split("/")
        method = "GET" if request.method == "HEAD" else request.method

        if method == "GET" and parts == ["api", "v1", "instance"]:
            return Response.json(200, self._instance_v1(), headers)
        if method == "GET" and parts == ["api", "v2", "instance"]:
            return Response.json(200, self._instance_v2(), headers)
        if method == "GET" and parts == ["api", "v1", "accounts", "verify_credentials"]:
            if account is None:
                return self._error(401, "The access token is invalid", headers)
            return Response.json(200, self._account_json(account, source=True), headers)
        if method == "POST" and parts == ["api", "v1", "statuses"]:
            if account is None:
                return self._error(401, "The access token is invalid", headers)
            return self._post_status(request, account, headers)
        if len(parts) == 4 and parts[:3] == ["api", "v1", "statuses"]:
            if method == "GET":
                return self._get_status(parts[3], headers)
            if method == "DELETE":
                if account is None:
                    return self._error(401, "The access token is invalid", headers)
                return self._delete_status(parts[3], account, headers)
        is_timeline = len(parts) == 5 and parts[:3] == ["api", "v1", "accounts"]
        if method == "GET" and is_timeline and parts[4] == "statuses":
            return self._account_statuses(request, parts[3], headers)
        return self._error(404, "Record not found", headers)

    # -- endpoints -----------------------------------------------------------------------

    def _post_status(
        self, request: Request, account: MastodonAccount, headers: list[tuple[str, str]]
    ) -> Response:
        try:
            form = self._form(request)
        except (ValueError, UnicodeDecodeError) as exc:
            return self._error(400, f"Invalid request: {exc}", headers)
        text = str(form.get("status") or "")
        spoiler = str(form.get("spoiler_text") or "")
        visibility = str(form.get("visibility") or "public").lower()
        language = form.get("language") or None
        parent_id = form.get("in_reply_to_id") or None
        # The controller loads the parent before the service checks idempotency, so an
        # unknown parent is a 404 even for a retried request.
        if parent_id is not None:
            parent_id = str(parent_id)
            parent = self._store.get(parent_id)
            if parent is None or parent.deleted:
                return self._error(404, "Record not found", headers)
        now = self.clock()
        key = request.header("idempotency-key")
        if key:
            seen = self._idempotency.get((account.id, key))
            if seen is not None and now - seen[1] < self.idempotency_ttl:
                original = self._store.get(seen[0])
                if original is not None:
                    status_headers = self._limit_headers(self._statuses.peek(account.id, now))
                    return Response.json(200, self._status_json(original), status_headers)
        if not text.strip():
            return self._error(422, "Validation failed: Text can't be blank", headers)
        if status_length(text, spoiler) > self.max_characters:
            message = f"Validation failed: Text character limit of {self.max_characters} exceeded"
            return self._error(422, message, headers)
        if visibility not in VISIBILITIES:
            return self._error(422, f"'{visibility}' is not a valid visibility", headers)
        if self._statuses.peek(account.id, now).exhausted:
            status_headers = self._limit_headers(self._statuses.peek(account.id, now))
            return self._error(429, "Too many requests", status_headers)
        # Mastodon reports the tighter per-account statuses budget on this endpoint.
        status_headers = self._limit_headers(self._statuses.hit(account.id, now))
        sensitive = _truthy(form.get("sensitive", False)) or bool(spoiler)
        post = self._create(
            account, text, parent_id, visibility, language, spoiler, sensitive, key or None
        )
        if key:
            self._idempotency[(account.id, key)] = (post.id, now)
        return Response.json(200, self._status_json(post), status_headers)

    def _create(
        self,
        account: MastodonAccount,
        text: str,
        in_reply_to: str | None,
        visibility: str,
        language: str | None,
        spoiler_text: str,
        sensitive: bool,
        idempotency_key: str | None,
    ) -> Post:
        post = Post(
            id=self._ids.next(),
            account=account.username,
            text=text,
            in_reply_to=in_reply_to,
            created_at=self.clock(),
            idempotency_key=idempotency_key,
            language=language,
        )
        self._store.add(post)
        self._extra[post.id] = _StatusExtra(account.id, visibility, spoiler_text, sensitive)
        return post

    def _get_status(self, status_id: str, headers: list[tuple[str, str]]) -> Response:
        post = self._store.get(status_id)
        if post is None or post.deleted:
            return self._error(404, "Record not found", headers)
        return Response.json(200, self._status_json(post), headers)

    def _delete_status(
        self, status_id: str, account: MastodonAccount, headers: list[tuple[str, str]]
    ) -> Response:
        post = self._store.get(status_id)
        if post is None or post.deleted or self._extra[post.id].account_id != account.id:
            return self._error(404, "Record not found", headers)
        data = self._status_json(post)
        data["text"] = post.text  # Mastodon returns the source text for redrafting
        self._store.mark_deleted(status_id)
        return Response.json(200, data, headers)

    def _account_statuses(
        self, request: Request, account_id: str, headers: list[tuple[str, str]]
    ) -> Response:
        if account_id not in self._by_id:
            return self._error(404, "Record not found", headers)
        try:
            limit = min(max(int(request.param("limit") or 20), 1), 40)
            max_id = int(request.param("max_id") or 0) or None
            since_id = int(request.param("since_id") or 0) or None
            min_id = int(request.param("min_id") or 0) or None
        except ValueError:
            return self._error(400, "Invalid request: ids and limit must be numeric", headers)
        statuses = [
            p
            for p in self._store.all()
            if not p.deleted and self._extra[p.id].account_id == account_id
        ]
        if _truthy(request.param("exclude_replies") or False):
            statuses = [p for p in statuses if p.in_reply_to is None]
        if _truthy(request.param("pinned") or False) or _truthy(
            request.param("only_media") or False
        ):
            statuses = []  # nothing is ever pinned or has media here
        if max_id is not None:
            statuses = [p for p in statuses if int(p.id) < max_id]
        if since_id is not None:
            statuses = [p for p in statuses if int(p.id) > since_id]
        if min_id is not None:
            # min_id pages forward: the statuses just after min_id, still newest first.
            statuses = [p for p in statuses if int(p.id) > min_id][:limit]
            page = list(reversed(statuses))
        else:
            page = list(reversed(statuses))[:limit]
        response = Response.json(200, [self._status_json(p) for p in page], headers)
        if page:
            url = f"{self.base_url}/api/v1/accounts/{account_id}/statuses"
            response.headers.append(
                (
                    "Link",
                    f'<{url}?max_id={page[-1].id}>; rel="next", '
                    f'<{url}?min_id={page[0].id}>; rel="prev"',
                )
            )
        return response

    # -- faults and the page -------------------------------------------------------------

    def _fault_response(self, request: Request, decision: FaultDecision) -> Response:
        if decision.action == "rate_limit":
            with self._lock:
                state = self._requests.peek(self._rate_key(request), self.clock())
            exhausted = WindowState(state.limit, 0, state.reset)
            return self._error(429, "Too many requests", self._limit_headers(exhausted))
        status = decision.status or 503
        if status == 500:
            return self._error(500, "Internal Server Error", [])
        # 502/503/504 come from the reverse proxy in front of Puma, as an HTML page.
        reason = {502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Time-out"}.get(
            status, "Server Error"
        )
        page = (
            f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
            f"<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
            "</body>\r\n</html>\r\n"
        )
        return Response.html(status, page)

    def _page(self) -> Response:
        notes = [
            "Accounts: " + ", ".join(f"@{a.username} (id {a.id})" for a in self._accounts),
            f"Character limit {self.max_characters} · pending faults: {self.faults.pending()}",
        ]
        return Response.html(
            200,
            render_threads(
                title=f"Mastodon sandbox — {self.base_url}",
                threads=self._store.threads(),
                notes=notes,
            ),
        )
