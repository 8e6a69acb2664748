"""The contract every channel (dry-run, X, Mastodon) fulfils.

A channel is the imperative edge: it turns one outbox part into one published post. It
never decides what to say; the planner did. It reports what happened through a
``PublishResult`` or by raising one of the ``DeliveryError`` subclasses below, which tell
delivery whether to retry, to pause, or to give up on the post.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import datetime

from ..model import OutboxPost
from ..textfit import LengthRule


@dataclass(frozen=True)
class PublishRequest:
    post: OutboxPost
    in_reply_to: str | None  # the platform's id of the parent post, or None for a root
    parent_key: str | None  # the idempotency key of that parent
    thread_root: str | None  # the platform's id of the thread's first post, or None
    thread_root_url: str | None = None
    # The platform refused a reply on this channel before: post standalone, linking the
    # thread. A channel that meets the refusal raises ``RepliesRefused``; delivery records
    # it and sets this on every later request.
    replies_refused: bool = False

    @property
    def text(self) -> str:
        return self.post.text

    @property
    def language(self) -> str:
        return self.post.language

    @property
    def idempotency_key(self) -> str:
        return self.post.key


@dataclass(frozen=True)
class PublishResult:
    remote_id: str
    url: str | None = None
    # The server said its limit is spent: send nothing on this channel before this time.
    not_before: datetime | None = None


class DeliveryError(Exception):
    """Base class: the platform did not confirm the post."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class TransientError(DeliveryError):
    """Network error, timeout or 5xx: the post may or may not exist; retry after a check."""


class RateLimited(DeliveryError):
    """429 or a spent budget: the channel must not send before ``until``."""

    def __init__(self, message: str, *, until: datetime, status: int | None = 429) -> None:
        super().__init__(message, status=status)
        self.until = until


class ChannelUnhealthy(DeliveryError):
    """Credentials refused, permission denied, credits exhausted: wait for a human."""


class Rejected(DeliveryError):
    """The platform refused this post for good (400/422): record it as failed."""


class RepliesRefused(DeliveryError):
    """The platform refused a reply; the channel may fall back to standalone posts."""


class Channel(abc.ABC):
    """One account on one platform, posting in one language."""

    name: str
    platform: str
    language: str

    @abc.abstractmethod
    def length_rule(self) -> LengthRule:
        """How this channel counts characters and how many it allows per post."""

    def start(self) -> None:
        """Connect, verify credentials, read server limits. Raise ``DeliveryError`` if not."""
        return None

    @abc.abstractmethod
    def publish(self, request: PublishRequest) -> PublishResult:
        """Publish one post, or raise a ``DeliveryError``."""

    @abc.abstractmethod
    def find_published(self, request: PublishRequest) -> PublishResult | None:
        """Look for a post this channel may already have published for ``request``.

        Called before re-sending a post whose outcome is unknown (timeout, dropped
        connection, crash between send and record), so that it is never posted twice.
        """

    def close(self) -> None:
        """Release connections."""
        return None
