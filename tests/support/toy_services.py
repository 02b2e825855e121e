"""Small stand-in services for the supervisor's tests, and how to tell that one is gone."""

import os
import sys
from typing import Any

import pytest

from ragyard.service_spec import ServiceSpec
from tests.support.network import free_port

# A service that accepts TCP connections on 127.0.0.1:<argv[1]> (the kernel completes them
# from the listen backlog; nothing needs to accept).
TCP_LISTENER = "import socket, sys, time; s = socket.create_server(('127.0.0.1', int(sys.argv[1]))); time.sleep(300)"


def tcp_service(name: str, **kwargs: Any) -> ServiceSpec:
    """A TCP_LISTENER on a free port, healthy once it accepts."""
    port = free_port()
    return ServiceSpec(name, [sys.executable, "-c", TCP_LISTENER, str(port)], health_tcp=("127.0.0.1", port), **kwargs)


def assert_gone(pid: int) -> None:
    """Neither the process nor any member of its process group exists (not even as a zombie)."""
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
