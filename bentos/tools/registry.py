"""The registry of tools: what a key may use, and one `call` that checks, validates, runs, times and
bounds every call, whichever tool it is (built in, or from a mounted MCP server)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import jsonschema

from bentos.tools.errors import (
    InvalidArguments,
    ToolNotAllowed,
    ToolTimeout,
    ToolUnavailable,
    UnknownTool,
)
from ragyard.contracts.tools import ToolResult
from ragyard.settings import ToolPolicy

logger = logging.getLogger("ragyard.tools")

BUILTIN = "builtin"


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]  # JSON schema of the arguments
    run: Callable[[dict[str, Any]], Awaitable[Any]]
    policy: ToolPolicy
    source: str = BUILTIN  # "builtin", or the mounted MCP server's name
    validator: jsonschema.protocols.Validator = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        cls = jsonschema.validators.validator_for(self.parameters, default=jsonschema.Draft202012Validator)
        try:
            cls.check_schema(self.parameters)
            validator = cls(self.parameters)
        except jsonschema.SchemaError as exc:
            # A mounted server's broken schema must not take the registry down: its server checks arguments.
            logger.warning("tool %s: invalid input schema (%s); arguments pass unchecked", self.name, exc.message)
            validator = jsonschema.Draft202012Validator({})
        object.__setattr__(self, "validator", validator)

    def allows(self, key_id: str) -> bool:
        return "*" in self.policy.allowed_keys or key_id in self.policy.allowed_keys


def argument_error(arguments: dict[str, Any], validator: jsonschema.protocols.Validator) -> InvalidArguments | None:
    """The most relevant schema violation, naming the field (`arguments.<path>`); None when valid."""
    error = jsonschema.exceptions.best_match(validator.iter_errors(arguments))
    if error is None:
        return None
    path = [str(part) for part in error.absolute_path]
    if error.validator == "required" and isinstance(error.instance, dict):
        path += [next(name for name in error.validator_value if name not in error.instance)]
    elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = error.schema.get("properties", {})
        path += [next(name for name in error.instance if name not in known)]
    param = ".".join(["arguments", *path])
    return InvalidArguments(f"{param}: {error.message}", param=param)


def bounded(result: Any, max_chars: int) -> tuple[Any, bool]:
    """The result, or its JSON text cut to `max_chars` characters (and True) when longer."""
    text = result if isinstance(result, str) else json.dumps(result, ensure_ascii=False, default=str)
    if len(text) <= max_chars:
        return result, False
    return text[:max_chars], True


class Registry:
    """The tools by name. Tools of a mounted server that went down stay as tombstones, so that a call
    to one answers 503 (it comes back), not 404; so do names under the prefix of a server that is down."""

    def __init__(self, max_result_chars: int):
        self.max_result_chars = max_result_chars
        self.tools: dict[str, Tool] = {}
        self.tombstones: dict[str, Tool] = {}
        self.down_sources: dict[str, str] = {}  # source -> why it is down

    def add(self, tool: Tool) -> None:
        if tool.name in self.tools and self.tools[tool.name].source != tool.source:
            raise ValueError(f"tool name {tool.name!r} is taken by {self.tools[tool.name].source}")
        self.tools[tool.name] = tool

    def publish(self, source: str, tools: list[Tool]) -> None:
        """The source (a mounted server) is up with these tools, replacing what it had."""
        self._drop(source)
        self.down_sources.pop(source, None)
        for tool in tools:
            self.add(tool)

    def take_down(self, source: str, reason: str) -> None:
        """The source is down: its tools leave the listing and answer 503 until it is back."""
        for name in [n for n, t in self.tools.items() if t.source == source]:
            self.tombstones[name] = self.tools.pop(name)
        self.down_sources[source] = reason

    def _drop(self, source: str) -> None:
        for table in (self.tools, self.tombstones):
            for name in [n for n, t in table.items() if t.source == source]:
                del table[name]

    def visible(self, key_id: str) -> list[Tool]:
        return [tool for tool in self.tools.values() if tool.allows(key_id)]

    def lookup(self, name: str, key_id: str) -> Tool:
        """The tool a key may call by this name, or the error that says why not."""
        tool = self.tools.get(name) or self.tombstones.get(name)
        if tool is None:
            for source, reason in self.down_sources.items():
                if name.startswith(f"{source}__"):
                    raise ToolUnavailable(f"tool {name!r}: MCP server {source!r} is down ({reason})")
            raise UnknownTool(f"unknown tool {name!r} (the tool listing shows what this key may use)", param="name")
        if not tool.allows(key_id):
            raise ToolNotAllowed(f"this key may not use tool {name!r}", param="name")
        if name not in self.tools:
            raise ToolUnavailable(
                f"tool {name!r}: MCP server {tool.source!r} is down "
                f"({self.down_sources.get(tool.source, 'reconnecting')}); it returns when the server does"
            )
        return tool

    async def call(self, name: str, arguments: dict[str, Any], key_id: str) -> ToolResult:
        tool = self.lookup(name, key_id)
        if problem := argument_error(arguments, tool.validator):
            raise problem
        started = time.perf_counter()
        with anyio.move_on_after(tool.policy.timeout_s) as deadline:
            result = await tool.run(arguments)
        if deadline.cancelled_caught:
            raise ToolTimeout(f"tool {name!r} did not finish within its timeout of {tool.policy.timeout_s:g} s")
        latency_ms = (time.perf_counter() - started) * 1000
        result, truncated = bounded(result, self.max_result_chars)
        return ToolResult(result=result, truncated=truncated, cost=tool.policy.cost, latency_ms=round(latency_ms, 2))
