"""What can go wrong with a tool call: the kit's one error type (`ragyard.kit.errors.ServiceError`),
with the status and code of each case. The REST API answers them in OpenAI's error shape (the kit's
handler set), the MCP server as a tool error (`isError`) with the message."""

from __future__ import annotations

from typing import ClassVar

from ragyard.contracts.tools import TOOL_FAILED, TOOL_TIMEOUT, TOOL_UNAVAILABLE
from ragyard.kit.errors import ServiceError


class ToolError(ServiceError):
    status_of: ClassVar[int] = 500
    code_of: ClassVar[str] = "tool_error"

    def __init__(self, message: str, param: str | None = None):
        super().__init__(self.status_of, message, param=param, code=self.code_of)


class Unauthenticated(ToolError):
    status_of, code_of = 401, "invalid_api_key"


class InvalidArguments(ToolError):
    """The arguments fail the tool's schema, or cannot be what the tool takes (a malformed expression)."""

    status_of, code_of = 400, "invalid_arguments"


class ToolRefused(ToolError):
    """Well-formed arguments that the tool's policy refuses: a write statement, a host not allowed
    (a 400 like any request that breaks a rule; the code tells the two apart)."""

    status_of, code_of = 400, "tool_refused"


class ToolNotAllowed(ToolError):
    status_of, code_of = 403, "tool_not_allowed"


class UnknownTool(ToolError):
    status_of, code_of = 404, "tool_not_found"


class ToolFailed(ToolError):
    """The tool ran and failed, or what it called answered with an error."""

    status_of, code_of = 502, TOOL_FAILED


class ToolUnavailable(ToolError):
    """The tool cannot run now: its MCP server is down, the service it calls cannot be reached."""

    status_of, code_of = 503, TOOL_UNAVAILABLE


class ToolTimeout(ToolError):
    status_of, code_of = 504, TOOL_TIMEOUT
