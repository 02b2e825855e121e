"""OpenAI tool calls as they travel: whole calls (`{id, type, function: {name, arguments}}`, the
arguments a JSON string) and stream deltas (`{index, id?, type?, function: {name?, arguments}}`).
The LLM bento and the router both merge deltas into calls and send calls as deltas; this is the one
place that knows the shapes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from typing import Any


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def make_call(name: str, arguments: dict[str, Any] | str, call_id: str | None = None) -> dict[str, Any]:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    return {"id": call_id or new_call_id(), "type": "function", "function": {"name": name, "arguments": text}}


def merge_tool_deltas(deltas: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Streamed tool-call deltas as whole calls: the first delta of each index, arguments joined."""
    calls: dict[int, dict[str, Any]] = {}
    for delta in deltas:
        index = delta.get("index", 0)
        function = delta.get("function") or {}
        arguments = function.get("arguments") or ""
        if index not in calls:
            calls[index] = {key: value for key, value in delta.items() if key != "index"}
            calls[index]["function"] = {**function, "arguments": arguments}
        else:
            calls[index]["function"]["arguments"] += arguments
    return [calls[index] for index in sorted(calls)]


def call_deltas(calls: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Whole calls as OpenAI streams them: per call, a first delta with its id, type and name (and
    empty arguments), then one with the arguments."""
    deltas = []
    for index, call in enumerate(calls):
        function = call["function"]
        deltas.append(
            {
                "index": index,
                "id": call["id"],
                "type": "function",
                "function": {"name": function["name"], "arguments": ""},
            }
        )
        deltas.append({"index": index, "function": {"arguments": function["arguments"]}})
    return deltas


def arguments_object(call: dict[str, Any]) -> dict[str, Any] | None:
    """A call's arguments as a JSON object, or None when they are not one."""
    arguments = call.get("function", {}).get("arguments")
    if isinstance(arguments, dict):
        return arguments
    try:
        value = json.loads(arguments or "{}")
    except (TypeError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None
