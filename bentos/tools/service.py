"""The tools bento: server-side tools for the router's agent and for MCP clients.

Start it with ``bentoml serve bentos.tools.service:Tools --host 127.0.0.1 --port 3005``.
Routes: ``GET /v1/tools`` (the caller's tools in OpenAI's `tools` format), ``POST /v1/tools/{name}``
``{"arguments": {...}}`` -> ``{result, truncated, cost, latency_ms}`` (`ragyard.contracts.tools`), and
the MCP endpoint ``/mcp``; BentoML adds /healthz, /readyz, /metrics. Callers name their key with
``Authorization: Bearer <ragyard key>`` (or the router with ``X-Ragyard-Key-Id``). Settings are parsed
at import: the MCP endpoint's allowed hosts are fixed when its app is built.
One worker: each worker would run its own MCP mounts (and stdio servers).
"""

from __future__ import annotations

import bentoml
from fastapi import FastAPI, Request

from bentos.tools.mcp_server import mcp_app
from bentos.tools.toolbox import Toolbox
from ragyard.contracts.tools import ToolCall, ToolList, ToolResult
from ragyard.kit.serving import serve_errors
from ragyard.settings import ToolsBentoSettings

toolbox = Toolbox(ToolsBentoSettings())
rest_app = FastAPI(title="ragyard tools", docs_url=None, redoc_url=None)


@bentoml.service(resources={"cpu": "1"}, traffic={"timeout": 120, "max_concurrency": 64}, workers=1)
@bentoml.asgi_app(rest_app, path="/v1")
@bentoml.asgi_app(mcp_app(toolbox), path="/")  # at the root with the route /mcp: no 307 to /mcp/
class Tools:
    def __init__(self) -> None:
        toolbox.open()

    @bentoml.on_startup
    async def start_mounts(self) -> None:
        await toolbox.start()

    @bentoml.on_shutdown
    async def stop(self) -> None:
        await toolbox.stop()

    def __is_ready__(self) -> bool:
        return toolbox.is_open

    @rest_app.get("/tools", response_model=ToolList)
    async def list_tools(self, request: Request) -> ToolList:
        """The tools the caller's key may use now (mounted servers that are down leave the list)."""
        return toolbox.listing(await toolbox.key_id(request.headers))

    @rest_app.post("/tools/{name}", response_model=ToolResult)
    async def call_tool(self, name: str, body: ToolCall, request: Request) -> ToolResult:
        """Call one tool; errors in OpenAI's shape (`ragyard.contracts.tools` lists them)."""
        return await toolbox.registry.call(name, body.arguments, await toolbox.key_id(request.headers))


serve_errors(Tools, rest_app)
