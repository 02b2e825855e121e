"""External MCP servers mounted into the registry (the official `mcp` SDK's client).

One supervisor task per configured server owns its connection (`async with Client(...)` must stay in
one task). While the server is up its tools are in the registry as `<server>__<tool>`, and a probe
(`tools/list`, which works in every protocol era, unlike ping) every `probe_interval_s` keeps the
listing current. When the connection fails (the server died, a probe failed, or a call found the
connection broken) the tools leave the registry as tombstones, so calls answer 503, and the supervisor
reconnects with a backoff; they come back when the server does. A call interrupted by a lost
connection is not retried: the tool may have run.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import mcp_types
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from bentos.tools.errors import ToolFailed, ToolUnavailable
from bentos.tools.registry import Registry, Tool
from ragyard.settings import McpServerSettings, ToolPolicy

logger = logging.getLogger("ragyard.tools.mounts")

PROBE_TIMEOUT_S = 5.0
FIRST_BACKOFF_S = 0.5
# Errors of a call that mean the connection, not the tool, failed.
CONNECTION_ERRORS = (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream, OSError)


def tool_name(server: str, remote: str) -> str:
    """`<server>__<remote>` within OpenAI's `^[A-Za-z0-9_-]{1,64}$`: other characters become `_`, and a
    name that had to change or is too long ends in a hash of the original, so two never collide."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", remote)
    name = f"{server}__{safe}"
    if safe == remote and len(name) <= 64:
        return name
    digest = hashlib.sha256(remote.encode()).hexdigest()[:8]
    return f"{name[:55]}_{digest}"


def describe(exc: BaseException) -> str:
    """The first leaf of an exception group, briefly."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {str(exc)[:200]}"


class Reconnect(Exception):
    """A call found the connection broken."""


class MountedServer:
    def __init__(
        self,
        config: McpServerSettings,
        registry: Registry,
        policies: dict[str, ToolPolicy],
        probe_interval_s: float,
        reconnect_max_s: float,
    ):
        self.config = config
        self.name = config.name
        self.registry = registry
        self.policies = policies
        self.probe_interval_s = probe_interval_s
        self.reconnect_max_s = reconnect_max_s
        self.client: Client | None = None
        self._listing: list[mcp_types.Tool] | None = None
        self._broken: anyio.Event | None = None
        registry.take_down(self.name, "not connected yet")

    @asynccontextmanager
    async def _connect(self) -> AsyncIterator[Client]:
        # cache=None: the listing is always asked afresh (the probe is the listing).
        if self.config.url:
            async with (
                create_mcp_http_client(headers=self.config.headers or None) as http,
                Client(
                    streamable_http_client(self.config.url, http_client=http), mode=self.config.mode, cache=None
                ) as client,
            ):
                yield client
        else:
            server = StdioServerParameters(
                command=self.config.command,
                args=self.config.args,
                env=self.config.env or None,
                cwd=self.config.cwd or None,
            )
            async with Client(server, mode=self.config.mode, cache=None) as client:
                yield client

    async def run(self) -> None:
        """The supervisor: connect, publish, probe; on failure take the tools down, wait, reconnect."""
        backoff = FIRST_BACKOFF_S
        while True:
            reason = "disconnected"
            try:
                async with self._connect() as client:
                    self._broken = anyio.Event()
                    self._publish(await self._list(client))
                    self.client = client
                    logger.info(
                        "MCP server %s is up (%s): %d tools",
                        self.name,
                        client.protocol_version,
                        len(self._listing or []),
                    )
                    backoff = FIRST_BACKOFF_S
                    await self._watch(client)
            except Exception as exc:  # noqa: BLE001 - whatever ended the connection, reconnect
                reason = describe(exc)
                logger.warning("MCP server %s is down: %s; retrying in %.1f s", self.name, reason, backoff)
            finally:
                self.client = None
                self._listing = None
                self.registry.take_down(self.name, reason)
            await anyio.sleep(backoff)
            backoff = min(backoff * 2, self.reconnect_max_s)

    async def _watch(self, client: Client) -> None:
        assert self._broken is not None
        while True:
            with anyio.move_on_after(self.probe_interval_s):
                await self._broken.wait()
            if self._broken.is_set():
                raise Reconnect("a call found the connection broken")
            with anyio.fail_after(PROBE_TIMEOUT_S):
                listing = await self._list(client)
            if listing != self._listing:
                self._publish(listing)

    async def _list(self, client: Client) -> list[mcp_types.Tool]:
        tools, cursor = [], None
        while True:
            page = await client.list_tools(cursor=cursor)
            tools += page.tools
            if not (cursor := page.next_cursor):
                return tools

    def _publish(self, listing: list[mcp_types.Tool]) -> None:
        self._listing = listing
        tools = []
        for remote in listing:
            name = tool_name(self.name, remote.name)
            tools.append(
                Tool(
                    name,
                    remote.description or remote.title or remote.name,
                    dict(remote.input_schema),
                    self._caller(remote.name),
                    self.policies.get(name, self.config),
                    source=self.name,
                )
            )
        self.registry.publish(self.name, tools)

    def _caller(self, remote: str):
        async def call(arguments: dict[str, Any]) -> Any:
            client = self.client
            if client is None:
                raise ToolUnavailable(f"MCP server {self.name!r} is down")
            try:
                result = await client.call_tool(remote, arguments)
            except MCPError as exc:
                if exc.code == mcp_types.CONNECTION_CLOSED or "session" in exc.message.lower():
                    self._connection_broken()
                    raise ToolUnavailable(f"MCP server {self.name!r}: {exc.message}; reconnecting") from None
                raise ToolFailed(f"MCP server {self.name!r} refused the call to {remote!r}: {exc.message}") from None
            except CONNECTION_ERRORS as exc:
                self._connection_broken()
                raise ToolUnavailable(f"MCP server {self.name!r}: {describe(exc)}; reconnecting") from None
            return self._result(remote, result)

        return call

    def _connection_broken(self) -> None:
        if self._broken is not None:
            self._broken.set()

    def _result(self, remote: str, result: mcp_types.CallToolResult) -> Any:
        texts = [part.text for part in result.content if isinstance(part, mcp_types.TextContent)]
        if result.is_error:
            raise ToolFailed(f"tool {remote!r} of MCP server {self.name!r} failed: {' '.join(texts) or 'no message'}")
        if result.structured_content is not None:
            return result.structured_content
        if len(texts) == len(result.content):
            return "\n".join(texts)
        return [part.model_dump(mode="json", exclude_none=True) for part in result.content]
