"""A small MCP server the tests mount into the tools bento, written with the official SDK:
``python -m tests.support.mcp_demo_server stdio`` or ``python -m tests.support.mcp_demo_server http PORT``."""

import sys

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("demo", version="0.1")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool(name="docs.search", description="A name with characters OpenAI's tool names do not allow.")
def docs_search(query: str) -> str:
    return f"found: {query}"


@server.tool()
async def slow(seconds: float) -> str:
    """Sleep, then answer."""
    await anyio.sleep(seconds)
    return "woke up"


@server.tool()
def big(n: int) -> str:
    """n characters."""
    return "x" * n


@server.tool()
def fail() -> str:
    """Always fails."""
    raise ToolError("this tool always fails")


if __name__ == "__main__":
    if sys.argv[1] == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
