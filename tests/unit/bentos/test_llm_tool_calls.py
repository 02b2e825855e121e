"""Tool calls written as text (llama.cpp, vLLM): the parser, the streaming filter, the plan per tool_choice.
The whole path with real models (template, grammar, parser, through the router) is in
tests/integration/bentos/test_router_tools.py."""

import asyncio
import json

import pytest

from bentos.llm.backends.base import Piece, TokenUsage
from bentos.llm.tool_calls import ToolCallFilter, forced_schema, parse_calls, plan_tools, template_messages
from ragyard.kit.errors import ServiceError
from ragyard.tool_calls import call_deltas, merge_tool_deltas

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CALCULATOR = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluate an arithmetic expression",
        "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]},
    },
}
NAMES = ["get_weather", "calculator"]


@pytest.mark.parametrize(
    "text",
    [
        '```json\n{\n  "name": "get_weather",\n  "arguments": {\n    "city": "Paris"\n  }\n}\n```',  # Qwen2.5-Coder
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',  # Hermes tags
        '  {"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}',  # bare, arguments as a string
        '```\n{"name": "get_weather", "parameters": {"city": "Paris"}}\n```\nThis gets the weather.',
    ],
)
def test_each_way_a_model_writes_a_call_parses_to_the_same_call(text):
    [call] = parse_calls(text, NAMES)
    assert call["type"] == "function" and call["id"].startswith("call_") and len(call["id"]) == 29
    assert call["function"]["name"] == "get_weather" and json.loads(call["function"]["arguments"]) == {"city": "Paris"}


@pytest.mark.parametrize(
    "text",
    [
        "Paris is sunny today.",
        '```json\n{"name": "greeting", "arguments": {"language": "French"}}\n```',  # a made-up tool
        '{"name": "get_weather", "arguments": ["Paris"]}',  # arguments not an object
        '```json\n{"name": "get_weather", "arguments": {"city": "Paris"\n```',  # cut off
        '```python\nprint("hi")\n```',
        # not at the start
        'I will call <tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>',
    ],
)
def test_anything_else_is_content(text):
    assert parse_calls(text, NAMES) is None


def test_several_tagged_calls_are_several_calls_unless_parallel_calls_are_off():
    text = (
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "calculator", "arguments": {"expression": "2+2"}}\n</tool_call>'
    )
    assert [c["function"]["name"] for c in parse_calls(text, NAMES)] == ["get_weather", "calculator"]
    assert [c["function"]["name"] for c in parse_calls(text, NAMES, parallel=False)] == ["get_weather"]
    # One bad block makes the whole answer content: half a set of calls is no answer.
    assert parse_calls(text.replace("calculator", "nope"), NAMES) is None


async def pieces(*items):
    for item in items:
        yield item


def run_filter(*items, names=NAMES):
    async def collect():
        return [item async for item in ToolCallFilter(names).pieces(pieces(*items))]

    return asyncio.run(collect())


def test_the_filter_streams_plain_content_as_it_comes():
    out = run_filter(Piece(" Hel"), Piece("lo"), Piece(" there", finish_reason="stop"), TokenUsage(5, 3))
    assert out == [Piece(" Hel"), Piece("lo"), Piece(" there", finish_reason="stop"), TokenUsage(5, 3)]


def test_the_filter_holds_a_call_back_and_sends_it_as_openai_deltas_before_the_usage():
    out = run_filter(
        Piece("```"),
        Piece('json\n{"name": "calculator", '),
        Piece('"arguments": {"expression": "17*23"}}\n```'),
        Piece(finish_reason="stop"),
        TokenUsage(40, 20),
    )
    assert isinstance(out[-1], TokenUsage) and out[-2].finish_reason == "tool_calls"
    deltas = [d for piece in out[:-1] for d in piece.tool_calls]
    assert deltas[0]["function"] == {"name": "calculator", "arguments": ""} and deltas[0]["id"].startswith("call_")
    [call] = merge_tool_deltas(deltas)
    assert json.loads(call["function"]["arguments"]) == {"expression": "17*23"}
    assert not any(piece.content for piece in out[:-1])


def test_held_text_that_is_no_call_comes_out_whole():
    out = run_filter(Piece('{"answer": '), Piece("42}", finish_reason="stop"), TokenUsage(5, 4))
    assert out == [Piece('{"answer": 42}', None, "stop"), TokenUsage(5, 4)]


def test_call_deltas_and_merge_are_inverse():
    calls = parse_calls(
        '<tool_call>{"name": "calculator", "arguments": {"expression": "1+1"}}</tool_call>'
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>',
        NAMES,
    )
    assert merge_tool_deltas(call_deltas(calls)) == calls


def test_template_messages_turn_argument_strings_back_into_objects():
    messages = [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18 C"},
    ]
    rendered = template_messages(messages)
    assert rendered[0]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}
    assert messages[0]["tool_calls"][0]["function"]["arguments"] == '{"city": "Paris"}'  # not changed in place
    assert rendered[1] == messages[1]


def test_the_plan_per_tool_choice():
    tools = [WEATHER, CALCULATOR]
    auto = plan_tools("qwen", tools, "auto", None, renders_chat=True, supports_tools=True)
    assert auto.tools == tools and auto.tool_choice is None and auto.forced_schema is None and auto.filter
    assert plan_tools("qwen", tools, "none", None, True, True).tools is None  # out of the prompt
    named = plan_tools("qwen", tools, {"type": "function", "function": {"name": "calculator"}}, None, True, False)
    assert named.forced_schema["properties"]["name"] == {"const": "calculator"}
    required = plan_tools("smol", tools, "required", False, True, False)
    assert [v["properties"]["name"]["const"] for v in required.forced_schema["oneOf"]] == NAMES
    assert required.filter.parallel is False
    provider = plan_tools("gpt", tools, "required", None, renders_chat=False, supports_tools=True)
    assert provider.tools == tools and provider.tool_choice == "required" and provider.filter is None


@pytest.mark.parametrize(
    "tools,choice,param",
    [
        ([WEATHER], "auto", "tools"),  # a template that ignores tools cannot choose among them
        ([WEATHER], {"type": "function", "function": {"name": "nope"}}, "tool_choice"),
        (None, "required", "tool_choice"),
    ],
)
def test_what_a_model_cannot_honour_is_a_400_naming_the_field(tools, choice, param):
    with pytest.raises(ServiceError) as refused:
        plan_tools("smol", tools, choice, None, renders_chat=True, supports_tools=False)
    assert refused.value.status == 400 and refused.value.param == param


def test_forced_schema_of_one_tool_is_that_tool_alone():
    schema = forced_schema([WEATHER, CALCULATOR], {"type": "function", "function": {"name": "get_weather"}})
    assert schema["properties"]["arguments"] == WEATHER["function"]["parameters"]
