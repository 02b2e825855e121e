"""The registry served as an MCP server (the official `mcp` SDK's low-level Server): streamable HTTP
at /mcp, stateless (any worker or replica answers any request), a ragyard API key required as the
bearer token, and each key shown and allowed only its own tools. Tool errors come back as MCP tool
errors (`isError`) with the same messages as the REST API's."""

from __future__ import annotations

import json

import mcp_types
from mcp.server import Server
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.caching import CacheHint
from mcp.server.context import ServerRequestContext
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from pydantic import AnyHttpUrl
from starlette.applications import Starlette

from bentos.tools.errors import ToolError
from bentos.tools.toolbox import Toolbox

MCP_PATH = "/mcp"


class KeyVerifier:
    """The SDK's token verifier over the router's API keys: the token's client id is the key id."""

    def __init__(self, toolbox: Toolbox):
        self.toolbox = toolbox

    async def verify_token(self, token: str) -> AccessToken | None:
        if self.toolbox.callers is None:
            return None
        key_id = await self.toolbox.callers.key_id_of_bearer(token)
        return AccessToken(token=token, client_id=key_id, scopes=[]) if key_id else None


def caller(ctx: ServerRequestContext) -> str:
    user = ctx.request.scope.get("user") if ctx.request is not None else None
    token = getattr(user, "access_token", None)
    if token is None:  # the SDK's bearer middleware lets no request through without one
        raise MCPError(mcp_types.INVALID_REQUEST, "no verified API key on this request")
    return token.client_id


def mcp_app(toolbox: Toolbox) -> Starlette:
    settings = toolbox.settings

    async def list_tools(ctx: ServerRequestContext, _params) -> mcp_types.ListToolsResult:
        return mcp_types.ListToolsResult(
            tools=[
                mcp_types.Tool(name=tool.name, description=tool.description, input_schema=tool.parameters)
                for tool in toolbox.registry.visible(caller(ctx))
            ]
        )

    async def call_tool(ctx: ServerRequestContext, params: mcp_types.CallToolRequestParams) -> mcp_types.CallToolResult:
        try:
            outcome = await toolbox.registry.call(params.name, params.arguments or {}, caller(ctx))
        except ToolError as exc:
            return mcp_types.CallToolResult(
                content=[mcp_types.TextContent(type="text", text=exc.message)], is_error=True
            )
        text = outcome.result if isinstance(outcome.result, str) else json.dumps(outcome.result, ensure_ascii=False)
        if outcome.truncated:
            text += f"\n[truncated to {settings.tools.max_result_chars} characters]"
        structured = outcome.result if isinstance(outcome.result, dict) else None
        return mcp_types.CallToolResult(
            content=[mcp_types.TextContent(type="text", text=text)],
            structured_content=structured,
            _meta={"ragyard/cost": outcome.cost, "ragyard/latency_ms": outcome.latency_ms},
        )

    server = Server(
        "ragyard-tools",
        version="0.1",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        # Which tools a key sees changes as mounted servers come and go: never cache the listing.
        cache_hints={"tools/list": CacheHint(ttl_ms=0, scope="private")},
    )
    return server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        stateless_http=True,
        transport_security=TransportSecuritySettings(
            allowed_hosts=settings.tools.mcp_allowed_hosts, allowed_origins=settings.tools.mcp_allowed_origins
        ),
        auth=AuthSettings(issuer_url=AnyHttpUrl(settings.router.url), resource_server_url=None),
        token_verifier=KeyVerifier(toolbox),
    )
