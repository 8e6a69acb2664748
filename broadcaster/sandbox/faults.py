"""Fault injection shared by the X and Mastodon sandboxes.

A ``Faults`` object is consulted once per request, before the request reaches the
platform logic, and answers with a ``FaultDecision``. Everything is adjustable at run time
from another thread (a test, an ops drill) and every decision is taken under one lock, so
"the next N requests" means exactly N even when requests arrive concurrently.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from typing import Literal

FaultAction = Literal["error", "hang", "drop", "rate_limit"]
FaultScope = Literal["posting", "all"]

# A hang must outlast any sensible client timeout, but a forgotten fault must not keep a
# handler thread alive for minutes; stop() also wakes hanging handlers early.
MAX_HANG_SECONDS = 60.0


@dataclass(frozen=True)
class FaultDecision:
    """What the server does to one request."""

    latency: float = 0.0
    action: FaultAction | None = None
    status: int | None = None  # the 5xx status, for action == "error"
    hang_seconds: float = 0.0
    hang_after_processing: bool = False  # the request is handled (a post created) first


NO_FAULT = FaultDecision()


class Faults:
    """Thread-safe, seedable fault settings.

    Probabilistic faults (``error_rate``, ``timeout_rate``, ``drop_rate``) draw from a
    private ``random.Random`` so a test that seeds it gets the same sequence every run.
    Counted faults (``fail_next``, ``hang_next``, ``drop_next``, ``rate_limit_next``) take
    precedence over probabilistic ones and are consumed one per request in scope.

    By default only posting endpoints (POST /2/tweets, POST /api/v1/statuses) are in
    scope, so reads used to verify what happened keep working; ``scope="all"`` widens it.
    """

    def __init__(self, *, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._set_defaults()

    def _set_defaults(self) -> None:
        self._scope: FaultScope = "posting"
        self._error_rate = 0.0
        self._error_statuses: tuple[int, ...] = (500, 502, 503)
        self._latency = 0.0
        self._timeout_rate = 0.0
        self._hang_seconds = 5.0
        self._hang_after_processing = False
        self._drop_rate = 0.0
        self._fail_next: list[int | None] = []
        self._hang_next = 0
        self._drop_next = 0
        self._rate_limit_next = 0

    # -- configuration -------------------------------------------------------------------

    def configure(
        self,
        *,
        scope: FaultScope | None = None,
        error_rate: float | None = None,
        error_statuses: tuple[int, ...] | None = None,
        latency: float | None = None,
        timeout_rate: float | None = None,
        hang_seconds: float | None = None,
        hang_after_processing: bool | None = None,
        drop_rate: float | None = None,
    ) -> None:
        """Change only the settings given; the others keep their current values."""
        for name, rate in (
            ("error_rate", error_rate),
            ("timeout_rate", timeout_rate),
            ("drop_rate", drop_rate),
        ):
            if rate is not None and not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {rate}")
        if scope is not None and scope not in ("posting", "all"):
            raise ValueError(f"scope must be 'posting' or 'all', got {scope!r}")
        if error_statuses is not None and not all(500 <= s <= 599 for s in error_statuses):
            raise ValueError("error_statuses must all be 5xx")
        with self._lock:
            if scope is not None:
                self._scope = scope
            if error_rate is not None:
                self._error_rate = error_rate
            if error_statuses is not None:
                self._error_statuses = tuple(error_statuses) or (500,)
            if latency is not None:
                self._latency = max(0.0, latency)
            if timeout_rate is not None:
                self._timeout_rate = timeout_rate
            if hang_seconds is not None:
                self._hang_seconds = min(max(0.0, hang_seconds), MAX_HANG_SECONDS)
            if hang_after_processing is not None:
                self._hang_after_processing = hang_after_processing
            if drop_rate is not None:
                self._drop_rate = drop_rate

    def fail_next(self, n: int = 1, *, status: int | None = None) -> None:
        """The next ``n`` requests in scope get a 5xx (``status``, or a random one)."""
        if status is not None and not 500 <= status <= 599:
            raise ValueError("status must be 5xx")
        with self._lock:
            self._fail_next.extend([status] * n)

    def hang_next(
        self, n: int = 1, *, seconds: float | None = None, after_processing: bool | None = None
    ) -> None:
        """The next ``n`` requests in scope hang, then the connection is closed unanswered.

        ``after_processing=True`` lets the request take effect first (the post exists),
        which is what a timeout on a slow but working platform looks like.
        """
        with self._lock:
            self._hang_next += n
            if seconds is not None:
                self._hang_seconds = min(max(0.0, seconds), MAX_HANG_SECONDS)
            if after_processing is not None:
                self._hang_after_processing = after_processing

    def drop_next(self, n: int = 1) -> None:
        """The next ``n`` requests in scope are handled, then dropped without a response."""
        with self._lock:
            self._drop_next += n

    def rate_limit_next(self, n: int = 1) -> None:
        """The next ``n`` requests in scope get the platform's 429, whatever the counters say."""
        with self._lock:
            self._rate_limit_next += n

    def seed(self, seed: int) -> None:
        with self._lock:
            self._rng.seed(seed)

    def reset(self) -> None:
        """Back to no faults at all (the RNG state is kept)."""
        with self._lock:
            self._set_defaults()

    @property
    def scope(self) -> FaultScope:
        with self._lock:
            return self._scope

    def pending(self) -> dict[str, int]:
        """Counted faults not yet consumed, for assertions and the ops page."""
        with self._lock:
            return {
                "fail": len(self._fail_next),
                "hang": self._hang_next,
                "drop": self._drop_next,
                "rate_limit": self._rate_limit_next,
            }

    # -- decision ------------------------------------------------------------------------

    def decide(self, *, posting: bool) -> FaultDecision:
        """Pick the fault for one request; consumes counted faults."""
        with self._lock:
            if not posting and self._scope == "posting":
                return NO_FAULT
            latency = self._latency
            hang = self._hang_seconds
            after = self._hang_after_processing
            if self._rate_limit_next:
                self._rate_limit_next -= 1
                return FaultDecision(latency=latency, action="rate_limit")
            if self._fail_next:
                status = self._fail_next.pop(0)
                if status is None:
                    status = self._rng.choice(self._error_statuses)
                return FaultDecision(latency=latency, action="error", status=status)
            if self._hang_next:
                self._hang_next -= 1
                return FaultDecision(
                    latency=latency, action="hang", hang_seconds=hang, hang_after_processing=after
                )
            if self._drop_next:
                self._drop_next -= 1
                return FaultDecision(latency=latency, action="drop")
            # Always draw all three numbers so one rate's setting doesn't shift the
            # sequence seen by the others: a seeded run stays reproducible when a test
            # tweaks a single rate.
            draw_error, draw_hang, draw_drop = (self._rng.random() for _ in range(3))
            if draw_error < self._error_rate:
                status = self._rng.choice(self._error_statuses)
                return FaultDecision(latency=latency, action="error", status=status)
            if draw_hang < self._timeout_rate:
                return FaultDecision(
                    latency=latency, action="hang", hang_seconds=hang, hang_after_processing=after
                )
            if draw_drop < self._drop_rate:
                return FaultDecision(latency=latency, action="drop")
            return FaultDecision(latency=latency) if latency > 0 else NO_FAULT
