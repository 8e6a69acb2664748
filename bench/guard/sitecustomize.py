"""Benchmarks talk to loopback only: refuse to resolve any other host.

On ``PYTHONPATH`` (``benchlib.child_env``), Python imports this at start-up in every daemon
the benchmarks launch, and ``benchlib`` installs it in the benchmark process itself. A
config pointing at a real X or Mastodon host then fails with an OSError instead of posting:
only the sandboxes on 127.0.0.1 stand in for the platforms.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

_real_getaddrinfo = socket.getaddrinfo


def _is_loopback(host: Any) -> bool:
    if host in (None, "", b"", "localhost", b"localhost"):
        return True  # None/"": a wildcard bind, no lookup
    name = host.decode() if isinstance(host, bytes) else str(host)
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def _loopback_only(host: Any, *args: Any, **kwargs: Any) -> Any:
    if not _is_loopback(host):
        raise OSError(f"benchmark tried to reach {host!r}; only loopback sandboxes are allowed")
    return _real_getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _loopback_only
