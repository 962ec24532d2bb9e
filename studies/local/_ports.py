"""Ports for the processes the embedded stack starts."""

from __future__ import annotations

import random
import socket
from pathlib import Path

# Ports handed out below the kernel's ephemeral range (where it picks ports for outgoing connections and for
# binds to port 0) and above Ray's worker ports (10002-19999): a port chosen here and bound a moment later by the
# process it is for cannot be given to another socket by the kernel meanwhile (a raylet once failed to start
# because its node-manager port, picked from the ephemeral range, was taken in between).
PORT_FLOOR = 20000
_handed_out: set[int] = set()
_pick = random.SystemRandom()  # not the global generator, which code under test may seed


def _ephemeral_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default; elsewhere a guess


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def free_port(preferred: int | None = None) -> int:
    """`preferred` if nothing listens on it, else a port nothing holds, outside the kernel's ephemeral range
    and never the same one twice in this process."""
    if preferred:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", preferred)) != 0:
                return preferred
    ceiling = _ephemeral_floor()
    if ceiling - PORT_FLOOR >= 1000:
        for _ in range(1000):
            port = _pick.randrange(PORT_FLOOR, ceiling)
            if port not in _handed_out and _bindable(port):
                _handed_out.add(port)
                return port
    with socket.socket() as s:  # no room below the ephemeral range: let the kernel choose
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
