"""What the tools bento serves, put together from its settings: the registry with the built-in tools
and the mounted MCP servers' tools, and who may call them. The service (REST) and the MCP server
both speak to one Toolbox."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from bentos.tools.builtins import BuiltinTools
from bentos.tools.callers import Callers
from bentos.tools.mounts import MountedServer
from bentos.tools.registry import Registry
from ragyard.contracts.tools import FunctionSpec, OpenAITool, ToolDetails, ToolList
from ragyard.kit.errors import Unavailable
from ragyard.settings import ToolsBentoSettings
from router.keys import KeyStore
from router.state import database


class Toolbox:
    def __init__(self, settings: ToolsBentoSettings):
        self.settings = settings
        self.registry = Registry(settings.tools.max_result_chars)
        self.builtins: BuiltinTools | None = None
        self.callers: Callers | None = None
        self.mounts: list[MountedServer] = []
        self._tasks: list[asyncio.Task] = []

    def open(self) -> None:
        """Make the built-in tools and open the key store (in the serving process, not at import)."""
        config = self.settings.tools
        self.builtins = BuiltinTools(self.settings)
        for tool in self.builtins.tools:
            self.registry.add(tool)
        self.callers = Callers(KeyStore(database(self.settings, "keys")), config.trust_key_id_header)
        self.mounts = [
            MountedServer(
                server, self.registry, config.policies, config.mcp_probe_interval_s, config.mcp_reconnect_max_s
            )
            for server in config.mcp_servers
        ]

    @property
    def is_open(self) -> bool:
        return self.callers is not None

    async def key_id(self, headers: Mapping[str, str]) -> str:
        """The calling key's id (see `Callers.key_id`); a 503 until the toolbox is open."""
        if self.callers is None:
            raise Unavailable("the tools bento is starting")
        return await self.callers.key_id(headers)

    async def start(self) -> None:
        """Start a supervisor task per mounted server, in the serving event loop."""
        self._tasks = [asyncio.create_task(mount.run(), name=f"mcp-mount-{mount.name}") for mount in self.mounts]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.builtins is not None:
            await self.builtins.aclose()
        if self.callers is not None:
            self.callers.close()

    def listing(self, key_id: str) -> ToolList:
        tools = self.registry.visible(key_id)
        return ToolList(
            tools=[
                OpenAITool(function=FunctionSpec(name=t.name, description=t.description, parameters=t.parameters))
                for t in tools
            ],
            details=[
                ToolDetails(name=t.name, source=t.source, cost=t.policy.cost, timeout_s=t.policy.timeout_s)
                for t in tools
            ],
        )
