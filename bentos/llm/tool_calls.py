"""Tool calls for the backends that render the chat template themselves (llama.cpp, vLLM): one
parser of the model's text for both, and what the prompt and the grammar need.

The models write a call as text. Qwen2.5's template asks for ``<tool_call>{"name", "arguments"}
</tool_call>`` tags; the Qwen2.5-Coder GGUFs answer with a fenced ```` ```json {"name", "arguments"} ````
block instead; others write the bare object. `parse_calls` takes any of the three, when the answer
starts with it (after blank space): a name that is not among the request's tools, arguments that are
not a JSON object, or text that does not parse leave the answer as plain content. llama-cpp-python
itself returns `tool_calls` only for a named `tool_choice`, and vLLM's hermes parser knows only the
tags; this parser serves both, streamed or not (`ToolCallFilter`).

`tool_choice`: "none" leaves the tools out of the prompt (with them there the models call anyway);
"auto" (or no choice) lets the model decide and parses its answer; "required" and a named function
constrain generation to a call by a JSON schema (a grammar on llama.cpp, structured outputs on vLLM)
and parse it the same way. One call per answer under a grammar; several `<tool_call>` blocks give
several calls unless `parallel_tool_calls` is false.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bentos.llm.backends.base import Piece, Stream, TokenUsage
from ragyard.kit.errors import ServiceError
from ragyard.tool_calls import call_deltas, make_call

# What the start of an answer that is a call looks like.
OPENERS = ("<tool_call>", "```json", "```\n{", "``` \n{", "{")
TAGGED = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.S)
FENCED = re.compile(r"^```(?:json)?\s*(.*?)\s*(?:```|$)", re.S)


def template_messages(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages as chat templates expect them: the arguments of earlier calls as objects.

    OpenAI sends them as JSON strings; a template that applies `tojson` to a string encodes it twice."""
    rendered = []
    for message in messages:
        if message.get("tool_calls"):
            calls = []
            for call in message["tool_calls"]:
                function = dict(call.get("function") or {})
                if isinstance(function.get("arguments"), str):
                    try:
                        function["arguments"] = json.loads(function["arguments"])
                    except json.JSONDecodeError:
                        pass  # not JSON: the template gets the text as it is
                calls.append({**call, "function": function})
            message = {**message, "tool_calls": calls}
        rendered.append(message)
    return rendered


def tool_names(tools: Sequence[dict[str, Any]]) -> list[str]:
    return [tool["function"]["name"] for tool in tools]


def forced_schema(tools: Sequence[dict[str, Any]], tool_choice: str | dict[str, Any]) -> dict[str, Any]:
    """The JSON schema of an answer that is one call: of the named function, or (required) of any tool."""
    chosen = [
        t for t in tools if isinstance(tool_choice, str) or t["function"]["name"] == tool_choice_name(tool_choice)
    ]
    variants = [
        {
            "type": "object",
            "properties": {
                "name": {"const": t["function"]["name"]},
                "arguments": t["function"].get("parameters") or {"type": "object"},
            },
            "required": ["name", "arguments"],
        }
        for t in chosen
    ]
    return variants[0] if len(variants) == 1 else {"oneOf": variants}


def tool_choice_name(tool_choice: str | dict[str, Any] | None) -> str | None:
    """The function a named `tool_choice` names; None for none/auto/required."""
    if isinstance(tool_choice, dict):
        return (tool_choice.get("function") or {}).get("name")
    return None


def _call(candidate: Any, names: set[str]) -> dict[str, Any] | None:
    if not isinstance(candidate, dict) or candidate.get("name") not in names:
        return None
    arguments = candidate.get("arguments", candidate.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return None
    return make_call(candidate["name"], arguments) if isinstance(arguments, dict) else None


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def parse_calls(text: str, names: Sequence[str], parallel: bool = True) -> list[dict[str, Any]] | None:
    """The calls the answer `text` makes, or None when it is plain content."""
    head = text.lstrip()
    if head.startswith("<tool_call>"):
        candidates = [_json(block.strip()) for block in TAGGED.findall(head)]
    elif head.startswith("```"):
        match = FENCED.match(head)
        found = _json(match.group(1)) if match else None
        candidates = found if isinstance(found, list) else [found]
    elif head.startswith("{"):
        candidates = [_json(head)]
    else:
        return None
    known = set(names)
    calls = [call for candidate in candidates if (call := _call(candidate, known)) is not None]
    if not calls or len(calls) < len(candidates):  # half a set of calls is no answer
        return None
    return calls if parallel else calls[:1]


def could_open_call(text: str) -> bool | None:
    """Whether an answer starting with `text` is (True) or is not (False) a call's opening; None
    while too little has come to tell."""
    head = text.lstrip()
    if not head:
        return None
    if any(head.startswith(opener) for opener in OPENERS):
        return True
    return None if any(opener.startswith(head) for opener in OPENERS) else False


class ToolCallFilter:
    """Turns a backend's pieces into OpenAI's: an answer that opens like a call is held back until the
    end and parsed (tool-call deltas and finish_reason tool_calls), any other streams as it comes."""

    def __init__(self, names: Sequence[str], parallel: bool = True):
        self.names = list(names)
        self.parallel = parallel

    async def pieces(self, generation: Stream) -> Stream:
        held, holding = "", None  # holding: None undecided, True a possible call, False plain content
        finish_reason, usage = None, None
        async with contextlib.aclosing(generation):  # closing this stops the model at once
            async for item in generation:
                if holding is False:
                    yield item
                elif isinstance(item, TokenUsage):
                    usage = item  # after what is held, as the last item
                else:
                    held += item.content or ""
                    finish_reason = item.finish_reason or finish_reason
                    holding = could_open_call(held)
                    if holding is False:
                        yield Piece(held or None, None, item.finish_reason)
        if holding is not False:
            calls = parse_calls(held, self.names, self.parallel) if holding else None
            if calls:
                deltas = call_deltas(calls)
                for delta in deltas[:-1]:
                    yield Piece(tool_calls=[delta])
                yield Piece(tool_calls=deltas[-1:], finish_reason="tool_calls")
            elif held or finish_reason:
                yield Piece(held or None, None, finish_reason)
        if usage is not None:
            yield usage


@dataclass(frozen=True)
class ToolPlan:
    """What a backend gets for a request's tools: the tools and tool_choice to pass on, a schema that
    forces one call, and the filter that parses the answer (None: the backend returns calls itself)."""

    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    forced_schema: dict[str, Any] | None = None
    filter: ToolCallFilter | None = None


def plan_tools(
    model: str,
    tools: list[dict[str, Any]] | None,
    tool_choice: str | dict[str, Any] | None,
    parallel: bool | None,
    renders_chat: bool,
    supports_tools: bool,
) -> ToolPlan:
    """How to serve `tools` and `tool_choice` on a model; a 400 naming the field it cannot honour."""
    name = tool_choice_name(tool_choice)
    if not tools:
        if tool_choice in (None, "none", "auto"):
            return ToolPlan()
        raise ServiceError(400, "tool_choice: requires tools", param="tool_choice")
    if isinstance(tool_choice, dict) and name not in tool_names(tools):
        raise ServiceError(400, f"tool_choice: function {name!r} is not among the request's tools", param="tool_choice")
    if not renders_chat:  # a provider: it parses its model's calls
        return ToolPlan(tools, tool_choice)
    if tool_choice == "none":
        return ToolPlan()  # with the tools in the prompt, the models call anyway
    forced = tool_choice == "required" or name is not None
    if not forced and not supports_tools:
        raise ServiceError(
            400,
            f"tools: model {model!r} does not choose tools (its chat template ignores them); "
            'force a call with tool_choice ("required" or a named function), or use a model '
            "that supports tools (supports_tools in GET /v1/models)",
            param="tools",
        )
    return ToolPlan(
        tools,
        None,
        forced_schema(tools, tool_choice) if forced and tool_choice is not None else None,
        ToolCallFilter(tool_names(tools), parallel is not False),
    )
