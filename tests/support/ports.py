"""Free loopback ports for the servers and processes tests start."""

from __future__ import annotations

import random
import socket
from pathlib import Path

# Ports handed out by this process: a child may not have bound its port yet when the next one is asked for.
_given: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _candidates() -> range:
    # Outside the kernel's ephemeral range: a port taken from bind(0) is also the range every outgoing
    # connection (Redis, PostgreSQL, httpx) draws its local port from, so a child starting a moment later
    # can find "its" port held by some client's socket (CI saw exactly that: "address already in use").
    low, high = _ephemeral_range()
    if low > 20_000:
        return range(10_000, low)
    return range(high + 1, 65_536) if high < 60_000 else range(10_000, 20_000)


def free_port() -> int:
    """A loopback port outside the ephemeral range, free a moment ago, and new to this process."""
    candidates = _candidates()
    for _ in range(200):
        port = random.choice(candidates)
        if port in _given:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given.add(port)
        return port
    raise RuntimeError(f"no free loopback port in {candidates.start}..{candidates.stop - 1}")
