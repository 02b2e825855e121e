"""What can go wrong with a tool call, each with its HTTP status and OpenAI error fields: the REST API
answers them in OpenAI's error shape, the MCP server as a tool error (`isError`) with the message."""

from __future__ import annotations


class ToolError(Exception):
    status = 500
    type = "server_error"
    code = "tool_error"

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param


class Unauthenticated(ToolError):
    status, type, code = 401, "authentication_error", "invalid_api_key"


class InvalidArguments(ToolError):
    """The arguments fail the tool's schema, or cannot be what the tool takes (a malformed expression)."""

    status, type, code = 400, "invalid_request_error", "invalid_arguments"


class ToolNotAllowed(ToolError):
    status, type, code = 403, "permission_error", "tool_not_allowed"


class UnknownTool(ToolError):
    status, type, code = 404, "invalid_request_error", "tool_not_found"


class ToolRefused(ToolError):
    """Well-formed arguments that the tool's policy refuses: a write statement, a host not allowed."""

    status, type, code = 422, "invalid_request_error", "tool_refused"


class ToolFailed(ToolError):
    """The tool ran and failed, or what it called answered with an error."""

    status, type, code = 502, "server_error", "tool_failed"


class ToolUnavailable(ToolError):
    """The tool cannot run now: its MCP server is down, the service it calls cannot be reached."""

    status, type, code = 503, "server_error", "tool_unavailable"


class ToolTimeout(ToolError):
    status, type, code = 504, "server_error", "tool_timeout"
