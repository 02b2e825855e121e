"""Wire schemas of the tools bento: the one place that defines its REST contract.

`GET /v1/tools` lists what the caller's key may use, in OpenAI's `tools` format (ready to pass to a
chat completion) with ragyard's details beside it; `POST /v1/tools/{name}` calls one. Errors come in
OpenAI's error shape (`ragyard.kit.errors`): 400 arguments that fail the schema (`param` names the
field, code `invalid_arguments`) or that the tool's policy refuses (code `tool_refused`), 401 no or a
wrong key, 403 a tool the key may not use, 404 an unknown tool, 502 the tool failed, 503 it cannot run
now (its MCP server is down), 504 it timed out: those three are the tool's own failures
(`TOOL_FAILURE_CODES`), which a client tells from the bento itself being unavailable.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

# The codes of a tool's own failure behind a bento that answered.
TOOL_FAILED, TOOL_UNAVAILABLE, TOOL_TIMEOUT = "tool_failed", "tool_unavailable", "tool_timeout"
TOOL_FAILURE_CODES = frozenset({TOOL_FAILED, TOOL_UNAVAILABLE, TOOL_TIMEOUT})

# The caller's API key id, set by the router on its calls (until it sends a service credential).
KEY_ID_HEADER = "X-Ragyard-Key-Id"


class FunctionSpec(BaseModel):
    name: str
    description: str
    parameters: dict[str, Any] = Field(description="JSON schema of the arguments.")


class OpenAITool(BaseModel):
    type: Literal["function"] = "function"
    function: FunctionSpec


class ToolDetails(BaseModel):
    name: str
    source: str = Field(description='"builtin", or the name of the mounted MCP server the tool comes from.')
    cost: float = Field(description="Charged per successful call, in the router's currency.")
    timeout_s: float


class ToolList(BaseModel):
    tools: list[OpenAITool]
    details: list[ToolDetails] = Field(description="Per tool of `tools`, in the same order.")


class ToolCall(BaseModel):
    arguments: dict[str, Any] = Field(default_factory=dict, description="The arguments, per the tool's schema.")


class ToolResult(BaseModel):
    result: Any = Field(description="What the tool returned; when `truncated`, its JSON text cut to the limit.")
    truncated: bool = Field(description="The result was longer than the bento's limit and was cut.")
    cost: float = Field(description="What this call costs the caller's key.")
    latency_ms: float
