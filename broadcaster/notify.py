"""The systemd notification protocol (sd_notify), without libsystemd.

systemd hands a ``Type=notify`` service a datagram socket in ``$NOTIFY_SOCKET``; the service
says ``READY=1`` once it serves, ``RELOADING=1`` / ``STOPPING=1`` around reloads and stops,
and, when the unit sets ``WatchdogSec=``, ``WATCHDOG=1`` more often than ``$WATCHDOG_USEC``.
The protocol is a few lines of socket code, so it lives here rather than in the unmaintained
``sdnotify`` package. Outside systemd (no ``$NOTIFY_SOCKET``) every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

log = logging.getLogger("broadcaster.notify")


def _address(value: str) -> str | None:
    """The AF_UNIX address in ``$NOTIFY_SOCKET``, or None if we cannot speak to it."""
    if value.startswith("@"):
        # Linux abstract namespace: systemd writes it with '@', the kernel wants a NUL.
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    # systemd ≥ 254 may hand out AF_VSOCK addresses (VMs); nothing here runs in one.
    log.warning("NOTIFY_SOCKET=%r is not a unix socket: systemd notifications disabled", value)
    return None


class Notifier:
    """Sends sd_notify datagrams. Never raises: a notification is never worth a crash."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        self.address = _address(raw) if raw else None
        self.watchdog_interval = _watchdog_interval(env)
        self._lock = threading.Lock()
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """Send ``KEY=VALUE`` fields as one datagram; True if it left."""
        if self.address is None:
            return False
        payload = "\n".join(fields).encode()
        try:
            # A fresh socket per message, as libsystemd does: a manager restarted
            # (daemon-reexec) gets a new socket at the same path.
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.sendto(payload, self.address)
        except OSError as e:
            with self._lock:
                if not self._warned:  # once: a missing socket would otherwise flood the log
                    self._warned = True
                    log.warning("cannot notify systemd: %s", e)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *_status(status))

    def reloading(self, status: str | None = "reloading") -> bool:
        # MONOTONIC_USEC lets systemd ≥ 253 (Type=notify-reload) match this RELOADING=1
        # with the reload it asked for; older managers ignore the field.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", *_status(status))

    def stopping(self, status: str | None = "stopping") -> bool:
        return self.send("STOPPING=1", *_status(status))

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.send(*_status(text))


def _status(text: str | None) -> list[str]:
    # One datagram field per line: a newline in the text would start a bogus field.
    return [f"STATUS={' '.join(text.split())}"] if text else []


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Seconds between pings (half the timeout, as sd_watchdog_enabled advises), or None."""
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid = env.get("WATCHDOG_PID")
    # WATCHDOG_PID names the process systemd watches; a child that inherited the variable
    # must not keep a dead parent looking alive.
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    return usec / 1_000_000 / 2


class Watchdog:
    """Pings the systemd watchdog while, and only while, ``healthy()`` says so.

    Withholding pings is the point: a daemon whose scheduler or delivery died, or whose
    store hangs, is restarted by systemd (``Restart=on-failure``) instead of silently
    promising updates it will never post.
    """

    def __init__(
        self,
        notifier: Notifier,
        healthy: Callable[[], tuple[bool, str]],
        interval: float | None = None,
    ) -> None:
        self.notifier = notifier
        self.healthy = healthy
        self.interval = interval if interval is not None else notifier.watchdog_interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_status: str | None = None

    @property
    def enabled(self) -> bool:
        return self.notifier.enabled and self.interval is not None

    def start(self) -> None:
        if not self.enabled or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def ping_once(self) -> bool:
        try:
            ok, status = self.healthy()
        except Exception as e:  # a failing check is an unhealthy daemon, not a dead thread
            ok, status = False, f"health check failed: {type(e).__name__}"
        if status != self._last_status:
            # STATUS= shows in `systemctl status`: say why pings stopped before systemd acts.
            self._last_status = status
            self.notifier.status(status)
            if not ok:
                log.error("unhealthy, withholding the watchdog ping: %s", status)
        if ok:
            self.notifier.watchdog()
        return ok

    def _loop(self) -> None:
        assert self.interval is not None
        while True:
            self.ping_once()
            if self._stop.wait(self.interval):
                return
