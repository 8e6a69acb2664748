"""The benchmarks cannot reach a real X or Mastodon host: the benchmark process and every
daemon it starts (``benchlib.child_env``) resolve loopback only."""

from __future__ import annotations

import subprocess
import sys

from support import ROOT

PROBE = """
import socket
for host in ("api.x.com", "mastodon.social"):
    try:
        socket.getaddrinfo(host, 443)
    except OSError as e:
        print(e)
socket.getaddrinfo("127.0.0.1", 80)
"""

BENCHMARK = f"""
import subprocess, sys
sys.path.insert(0, {str(ROOT / "bench")!r})
from benchlib import child_env
exec({PROBE!r})
subprocess.run([sys.executable, "-c", {PROBE!r}], env=child_env(), check=True)
"""


def test_benchmarks_and_their_daemons_cannot_resolve_a_real_platform() -> None:
    out = subprocess.run(
        [sys.executable, "-c", BENCHMARK], capture_output=True, text=True, check=True
    ).stdout
    refused = [line for line in out.splitlines() if "only loopback" in line]
    assert len(refused) == 4, out  # two hosts, in the benchmark and in its daemon
    assert all("api.x.com" in r or "mastodon.social" in r for r in refused)
