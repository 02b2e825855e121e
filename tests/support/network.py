"""Loopback ports for the servers the tests start.

`make test` runs two pytest-xdist workers. A port found free with `bind(0)` stays free only until the
server binds it, and the other worker could take the same one in between (it happened: a retriever
bento failed on "Address already in use"). So each worker hands out ports from a range of its own,
below the kernel's ephemeral range (where `bind(0)` and outgoing connections take theirs), and never
hands out one port twice.
"""

import functools
import os
import random
import socket
from pathlib import Path

_LOWEST = 10_000
_handed_out: set[int] = set()
_choice = random.Random()  # not the global one, which tests may seed


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


@functools.cache  # fixed for the life of a worker: read once
def _worker_ports() -> range:
    """This worker's share of the ports between _LOWEST and the ephemeral range."""
    index = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    workers = max(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")), 1)
    span = (_ephemeral_start() - _LOWEST) // workers
    return range(_LOWEST + index * span, _LOWEST + (index + 1) * span)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, not handed out before in this session,
    and in this worker's own range."""
    ports = _worker_ports()
    for _ in range(len(ports)):
        port = _choice.choice(ports)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free loopback port left in {ports}")
