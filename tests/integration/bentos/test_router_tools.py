"""Tool calls through the front door, end to end: real `bentoml serve` processes (the LLM bento, the
safety bento, the router) and the official `openai` client used the way OpenAI's function-calling
guide shows it. Qwen2.5-Coder-0.5B where a model must choose a tool itself, SmolLM2 for a model that
cannot, and a scripted model (tests/support/scripted_llm.py, its own process behind the LLM bento's `openai`
backend) where a test needs a given call or must see what reached the model.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from ragyard.settings import (
    CatalogModel,
    LLMSettings,
    MlflowSettings,
    SafetySettings,
    Settings,
    settings_env,
)
from router.keys import KeyStore
from router.state import database
from tests.support.network import free_port
from tests.support.scripted_llm import script, scripted_spec
from tests.support.stack import Stack

SMOL, QWEN, SCRIPTED = "smollm2-135m", "qwen2.5-coder-0.5b", "scripted"
EMAIL = "zorblax.quint@example.com"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a given location",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    },
}


class ToolsRouter:
    """The router of the module's stack, and what reached the scripted model behind it."""

    def __init__(self, url: str, key: str, requests_file: Path):
        self.url, self.key, self.requests_file = url, key, requests_file
        self.client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=600)

    def post(self, body: dict) -> httpx.Response:
        return httpx.post(
            f"{self.url}/v1/chat/completions", json=body, timeout=600, headers={"Authorization": f"Bearer {self.key}"}
        )

    def last_sent(self) -> dict:
        """The last request body that reached the scripted model."""
        return json.loads(self.requests_file.read_text().splitlines()[-1])


@pytest.fixture(scope="module")
def qwen_path() -> Path:
    """Qwen2.5-Coder-0.5B's GGUF, from its PyPI package (`make llm-models-test`); fails without it."""
    from bentos.llm.models import ModelNotInstalled, resolve_gguf

    try:
        return resolve_gguf(QWEN, Settings().llm_models_dir)
    except ModelNotInstalled as exc:
        pytest.fail(f"Qwen2.5-Coder-0.5B is not installed ({exc}); run `make llm-models-test`")


@pytest.fixture(scope="module")
def stack(tmp_path_factory, smollm2_path, qwen_path) -> Iterator[ToolsRouter]:
    home = tmp_path_factory.mktemp("tools")
    requests_file = home / "scripted-requests.jsonl"
    scripted = scripted_spec(SCRIPTED, free_port(), requests_file)
    settings = Settings(
        home=home,
        # Traces go nowhere (no MLflow server here); safety on, the caches on (tool requests skip them).
        mlflow=MlflowSettings(url=f"http://127.0.0.1:{free_port()}", run_local=False),
        safety=SafetySettings(port=free_port()),
        llm=LLMSettings(
            port=free_port(),
            n_threads=2,
            probe_tokens=0,
            max_tokens=1024,
            models=[
                CatalogModel(
                    name=SMOL,
                    model=str(smollm2_path),
                    context_length=4096,
                    quality=0.1,
                    input_per_1k=0.001,
                    output_per_1k=0.002,
                ),
                CatalogModel(
                    name=QWEN,
                    model=str(qwen_path),
                    context_length=4096,
                    quality=0.5,
                    input_per_1k=0.002,
                    output_per_1k=0.004,
                ),
                CatalogModel(
                    name=SCRIPTED,
                    backend="openai",
                    model=SCRIPTED,
                    base_url=f"{scripted.ui_url}/v1",
                    context_length=8192,
                    input_per_1k=0.0001,
                    output_per_1k=0.0002,
                ),
            ],
        ),
    )
    router = settings.router
    router.safety_timeout_s = 120  # the safety bento takes seconds per check on a loaded machine
    router.first_token_timeout_s = 280
    router.deadline_s = 290  # under the bento's own request timeout (300 s)
    env = {**settings_env(settings), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    store = KeyStore(database(settings, "keys"))
    try:
        _, key = store.create("tools", budget=10.0)
    finally:
        store.close()
    with Stack(home) as services:
        services.start(scripted)  # before the LLM bento, which lists its models
        services.start(
            services.bento_spec("bentos.llm.service:LLM", port=settings.llm.port, env=env, timeout_s=600),
            services.bento_spec("bentos.safety.service:Safety", port=settings.safety.port, env=env, timeout_s=600),
        )
        router_url = services.bento("bentos.router.service:Router", env=env)
        yield ToolsRouter(router_url, key, requests_file)


def sse_events(response: httpx.Response) -> list[dict]:
    return [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")]


def test_a_real_model_calls_a_tool_through_the_router_whole_and_streamed_then_reads_its_result(stack):
    """The request of the issue: tools and tool_choice sent to the router come back as tool_calls, and
    the tool's result sent back as a `tool` message is rendered into the model's prompt."""
    client = stack.client
    request = {
        "model": QWEN,
        "max_tokens": 48,
        "temperature": 0,
        "tools": [WEATHER],
        "tool_choice": "auto",
        "messages": [{"role": "user", "content": "What's the weather like in Paris right now?"}],
    }
    answer = client.chat.completions.create(**request)
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [call] = choice.message.tool_calls
    assert call.function.name == "get_weather" and "Paris" in json.loads(call.function.arguments)["location"]
    assert answer.model_extra["ragyard"]["cache"] == "off"  # a tool conversation is never cached

    chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **request))
    deltas = [d for c in chunks if c.choices for d in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].id.startswith("call_") and deltas[0].function.name == "get_weather"
    assert all(d.function.name is None for d in deltas[1:])
    assert json.loads("".join(d.function.arguments or "" for d in deltas)) == json.loads(call.function.arguments)
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finishing] == ["tool_calls"]
    # OpenAI's shape: the usage alone in a last chunk without choices, null on every other.
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])

    messages = [
        *request["messages"],
        choice.message,
        {"role": "tool", "tool_call_id": call.id, "content": "31 degrees Celsius, sunny"},
    ]
    final = client.chat.completions.create(**{**request, "messages": messages, "tool_choice": "none"})
    assert final.choices[0].message.tool_calls is None and final.choices[0].message.content.strip()
    assert final.choices[0].finish_reason in ("stop", "length")


def test_the_openai_tool_loop_of_the_docs_works_against_the_router(stack):
    """create -> tool_calls -> run the function -> append the assistant message and a tool message
    -> create -> the final answer, exactly as OpenAI's function-calling guide does it."""
    client = stack.client

    def get_weather(location: str) -> str:
        return f"18 degrees Celsius and light rain in {location}"

    messages = [{"role": "user", "content": "What's the weather like in Paris today?"}]
    completion = client.chat.completions.create(model=SCRIPTED, messages=messages, tools=[WEATHER])
    assert completion.choices[0].finish_reason == "tool_calls"
    messages.append(completion.choices[0].message)  # the SDK's own message object, as the guide appends it
    for tool_call in completion.choices[0].message.tool_calls:
        result = get_weather(**json.loads(tool_call.function.arguments))
        messages.append({"role": "tool", "tool_call_id": tool_call.id, "content": result})
    completion = client.chat.completions.create(model=SCRIPTED, messages=messages, tools=[WEATHER])
    assert (
        completion.choices[0].message.content
        == "The weather in Paris: 18 degrees Celsius and light rain in Paris, France"
    )
    # What reached the model behind the LLM bento: the call it made, and the tool's answer to it.
    sent = stack.last_sent()["messages"]
    assert sent[1]["tool_calls"][0]["id"] == sent[2]["tool_call_id"] and sent[2]["role"] == "tool"


def test_the_streamed_openai_tool_loop_of_the_docs_works_against_the_router(stack):
    """The guide's streaming variant: the calls put together from `delta.tool_calls` by their index."""
    client = stack.client
    messages = [{"role": "user", "content": "What's the weather like in Paris today?"}]
    final_tool_calls = {}
    for chunk in client.chat.completions.create(model=SCRIPTED, messages=messages, tools=[WEATHER], stream=True):
        for tool_call in chunk.choices[0].delta.tool_calls or []:
            index = tool_call.index
            if index not in final_tool_calls:
                final_tool_calls[index] = tool_call
            else:
                final_tool_calls[index].function.arguments += tool_call.function.arguments
    [call] = final_tool_calls.values()
    assert call.id.startswith("call_") and call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    messages.append(
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": call.function.arguments},
                }
            ],
        }
    )
    messages.append({"role": "tool", "tool_call_id": call.id, "content": f"12 degrees in {arguments['location']}"})
    stream = client.chat.completions.create(model=SCRIPTED, messages=messages, tools=[WEATHER], stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "The weather in Paris: 12 degrees in Paris, France"
    sent = stack.last_sent()
    assert sent["stream"] is True and sent["messages"][2] == {
        "role": "tool",
        "tool_call_id": call.id,
        "content": "12 degrees in Paris, France",
    }


def test_the_rest_of_the_request_surface_reaches_the_model_or_is_refused_by_name(stack):
    body = {
        "model": SCRIPTED,
        "max_tokens": 16,
        "messages": [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "Say hello"}],
        "seed": 7,
        "presence_penalty": 0.5,
        "frequency_penalty": 0.25,
        "logit_bias": {"42": -5},
        "stop": ["\n\n"],
        "response_format": {"type": "json_object"},
        "parallel_tool_calls": False,
        "tools": [WEATHER],
        "tool_choice": "none",
        "n": 1,
        "logprobs": False,
        "store": False,
        "user": "u-1",
        "metadata": {"ticket": "T-9"},
        "prompt_cache_key": "k",
        "service_tier": "auto",
    }
    answered = stack.post(body)
    assert answered.status_code == 200, answered.text
    # The scripted model answers a JSON request with a JSON object: the empty one, asked for nothing else.
    assert answered.json()["choices"][0]["message"]["content"] == "{}"
    sent = stack.last_sent()
    assert sent["seed"] == 7 and sent["presence_penalty"] == 0.5 and sent["frequency_penalty"] == 0.25
    assert sent["logit_bias"] == {"42": -5.0} and sent["stop"] == ["\n\n"] and sent["tool_choice"] == "none"
    assert sent["response_format"] == {"type": "json_object"} and sent["parallel_tool_calls"] is False
    assert sent["messages"][0]["role"] == "system"  # developer: the name every upstream knows
    refused = {
        "n": 2,
        "logprobs": True,
        "top_logprobs": 3,
        "store": True,
        "audio": {"voice": "alloy"},
        "functions": [WEATHER["function"]],
        "reasoning_effort": "high",
        "modalities": ["audio"],
        "web_search_options": {},
        "service_tier": "flex",
        "bogus_field": 1,
    }
    for field, value in refused.items():
        response = stack.post({**body, field: value})
        assert response.status_code == 400, (field, response.text)
        error = response.json()["error"]
        assert error["param"] == field and error["message"].startswith(field), error
    tool_choice = stack.post({**body, "tools": None, "tool_choice": "required"})
    assert tool_choice.status_code == 400 and tool_choice.json()["error"]["param"] == "tool_choice"


def test_a_model_that_cannot_choose_tools_is_refused_and_a_forced_call_works_on_it(stack):
    messages = [{"role": "user", "content": "What is the weather in Oslo?"}]
    with pytest.raises(openai.BadRequestError) as refused:  # SmolLM2's template never shows the tools
        stack.client.chat.completions.create(model=SMOL, messages=messages, tools=[WEATHER], max_tokens=32)
    assert refused.value.body["param"] == "tools" and "tool_choice" in refused.value.body["message"]
    forced = stack.client.chat.completions.create(
        model=SMOL,
        messages=messages,
        tools=[WEATHER],
        max_tokens=64,
        temperature=0,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    assert forced.choices[0].finish_reason == "tool_calls", forced
    [call] = forced.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and set(json.loads(call.function.arguments)) == {"location"}


def test_tool_call_arguments_pass_output_safety_as_text(stack):
    """The default policy redacts PII in answers: in a call's arguments too, before the client sees them."""
    send = {"type": "function", "function": {"name": "send_mail", "parameters": {"type": "object"}}}
    # The address hidden from the input check as "\u0040": the model writes it, nobody asked it to.
    hidden = json.dumps({"to": EMAIL, "text": "hi"}).replace("@", "\\u0040")
    body = {
        "model": SCRIPTED,
        "max_tokens": 16,
        "tools": [send],
        "messages": [{"role": "user", "content": script(("send_mail", hidden))}],
    }
    whole = stack.post(body)
    assert whole.status_code == 200, whole.text
    arguments = json.loads(whole.json()["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"])
    assert EMAIL not in json.dumps(arguments) and arguments["text"] == "hi" and arguments["to"]
    streamed = sse_events(stack.post({**body, "stream": True}))
    deltas = [d for e in streamed if e["choices"] for d in e["choices"][0]["delta"].get("tool_calls", [])]
    assert deltas and EMAIL not in json.dumps(deltas)
