"""What a supervised service is (how to run it, where it listens) and how to tell that it is healthy."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from urllib.parse import urlparse

import httpx

# Interval between two health checks while a service starts.
HEALTH_POLL_S = 0.25
# Timeout of one health check (HTTP request or TCP connect).
HEALTH_CHECK_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class ServiceSpec:
    """How to run one service and how to tell that it is ready."""

    name: str  # e.g. "milvus"; also names the log file
    argv: list[str]  # command to exec
    # HTTP URL that must answer with a status below 400 for the service to be healthy.
    health_url: str | None = None
    # Or: (host, port) that must accept a TCP connection. With both set, both must pass;
    # with neither, the service counts as healthy as soon as it has been started and is running.
    health_tcp: tuple[str, int] | None = None
    ui_url: str | None = None  # logged for the user once the service is healthy
    env: dict[str, str] = field(default_factory=dict)  # merged over os.environ
    cwd: str | None = None
    startup_timeout_s: float = 120.0

    @property
    def address(self) -> tuple[str, int] | None:
        """The (host, port) the service listens on, as far as its health check tells."""
        if self.health_tcp is not None:
            return self.health_tcp
        url = urlparse(self.health_url or "")
        return (url.hostname, url.port) if url.hostname and url.port else None


def is_healthy(spec: ServiceSpec, client: httpx.Client) -> bool:
    """One health check of the service: its TCP port accepts, its health URL answers below 400."""
    if spec.health_tcp is not None and not port_in_use(spec.health_tcp):
        return False
    if spec.health_url is not None:
        try:
            response = client.get(spec.health_url)
        except httpx.HTTPError:
            return False
        if response.status_code >= 400:
            return False
    return True


def health_client() -> httpx.Client:
    # trust_env=False: health URLs are local, never to be sent through an HTTP(S)_PROXY.
    return httpx.Client(timeout=HEALTH_CHECK_TIMEOUT_S, trust_env=False)


def port_in_use(address: tuple[str, int]) -> bool:
    """Something accepts TCP connections at the address."""
    try:
        with socket.create_connection(address, timeout=HEALTH_CHECK_TIMEOUT_S):
            return True
    except OSError:
        return False
