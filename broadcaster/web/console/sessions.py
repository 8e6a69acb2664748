"""Sessions, CSRF tokens and the login rate limit, kept in the console's memory.

A session is a random id in an HttpOnly, SameSite=Strict cookie; everything else stays on
the server. Each session has its own CSRF token, which every form and every JSON request
must carry. A restart logs everyone out, which is fine for a tool people open when needed.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field

COOKIE = "broadcaster_console"
IDLE_LIMIT = 12 * 3600.0  # seconds a session may stay unused


@dataclass
class Session:
    id: str
    csrf: str
    name: str | None = None  # the person, once logged in
    last_used: float = field(default_factory=time.monotonic)

    @property
    def authenticated(self) -> bool:
        return self.name is not None

    def csrf_ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.csrf.encode())


class Sessions:
    def __init__(self) -> None:
        self._by_id: dict[str, Session] = {}
        self._lock = threading.Lock()

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        with self._lock:
            session = self._by_id.get(session_id)
            now = time.monotonic()
            if session is None or now - session.last_used > IDLE_LIMIT:
                self._by_id.pop(session_id, None)
                return None
            session.last_used = now
            return session

    def new(self, name: str | None = None) -> Session:
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), name)
        with self._lock:
            self._by_id[session.id] = session
            if len(self._by_id) > 10_000:  # anonymous visits must not grow memory forever
                oldest = min(self._by_id.values(), key=lambda s: s.last_used)
                self._by_id.pop(oldest.id, None)
        return session

    def drop(self, session: Session) -> None:
        with self._lock:
            self._by_id.pop(session.id, None)


class LoginLimiter:
    """At most ``attempts`` failed logins per client in ``window`` seconds."""

    def __init__(self, attempts: int = 5, window: float = 60.0) -> None:
        self.attempts = attempts
        self.window = window
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float]:
        failures = self._failures.setdefault(client, deque())
        while failures and now - failures[0] > self.window:
            failures.popleft()
        return failures

    def retry_after(self, client: str) -> float:
        """Seconds before this client may try again; 0 when it may now."""
        with self._lock:
            now = time.monotonic()
            failures = self._recent(client, now)
            if len(failures) < self.attempts:
                return 0.0
            return max(0.0, self.window - (now - failures[0]))

    def failed(self, client: str) -> None:
        with self._lock:
            self._recent(client, time.monotonic()).append(time.monotonic())

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)
