"""The LLM bento as a real `bentoml serve` process with SmolLM2-135M, called with the official openai client.

A real llama.cpp OpenAI-compatible server (`python -m llama_cpp.server`, same model) is the remote
provider behind the bento's HTTP backend. Generations stay short: two shared cores.
"""

import asyncio
import json
import re
import time

import httpx
import openai
import pytest

from tests.support.network import free_port
from tests.support.stack import Stack

LOCAL = "smollm2-135m"
REMOTE = "remote-smollm2"
DOWN = "remote-down"
EOS = 2  # SmolLM2's <|im_end|>: a logit bias of -100 on it makes a generation run to max_tokens
QUESTION = [{"role": "user", "content": "What is a Python list? Answer in one sentence."}]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with Stack(tmp_path_factory.mktemp("llm")) as stack:
        yield stack


@pytest.fixture(scope="module")
def llama_server(stack, smollm2_path):
    """llama-cpp-python's own OpenAI-compatible server: the 'remote provider'."""
    return stack.llama_server("llama-server", smollm2_path, alias="smollm2-remote")


@pytest.fixture(scope="module")
def llm_url(stack, llama_server):
    catalog = [
        {"name": LOCAL, "model": LOCAL, "context_length": 2048, "quality": 0.1},
        {
            "name": REMOTE,
            "backend": "openai",
            "model": "smollm2-remote",
            "base_url": f"{llama_server}/v1",
            "tokenizer": LOCAL,
            "context_length": 2048,
            "input_per_1k": 0.5,
            "output_per_1k": 1.5,
            "quality": 0.2,
        },
        {
            "name": DOWN,
            "backend": "openai",
            "model": "gone",
            "base_url": f"http://127.0.0.1:{free_port()}/v1",
            "input_per_1k": 1.0,
            "output_per_1k": 2.0,
        },
    ]
    env = {
        "RAGYARD_LLM__MODELS": json.dumps(catalog),
        "RAGYARD_LLM__N_THREADS": "1",
        "RAGYARD_LLM__MAX_TOKENS": "256",
        "RAGYARD_LLM__QUEUE_SIZE": "2",
        "RAGYARD_LLM__PROBE_TOKENS": "4",
    }
    yield stack.bento("bentos.llm.service:LLM", env=env, timeout_s=180)
    stack.stop("llm")
    # A request left hanging (e.g. by a client that gave up) would keep the worker from shutting
    # down, and it would outlive the server as an orphan.
    log = stack.log("llm")
    assert "Service instance cleanup finalized" in log, log[-3000:]


@pytest.fixture(scope="module")
def client(llm_url):
    return openai.OpenAI(base_url=f"{llm_url}/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def raw_llama(smollm2_path):
    """The same model in-process, the reference the bento's greedy answers must equal."""
    from llama_cpp import Llama

    return Llama(model_path=str(smollm2_path), n_ctx=2048, n_threads=1, verbose=False)


def metric(text: str, name: str, **labels) -> float:
    selector = ",".join(f'{key}="{value}"' for key, value in labels.items())
    match = re.search(rf"^{name}\{{{selector}\}} ([0-9.e+-]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_models_list_the_catalog_with_context_prices_quality_and_backend(client, llm_url):
    cards = {card["id"]: card for card in httpx.get(f"{llm_url}/v1/models", timeout=10).json()["data"]}
    assert set(cards) == {LOCAL, REMOTE, DOWN}
    local, remote = cards[LOCAL], cards[REMOTE]
    assert local["context_length"] == 2048 and local["backend"] == "llama_cpp" and local["quality"] == 0.1
    # Self-hosted: derived from the throughput measured at start-up; generating costs more than reading.
    assert 0 < local["pricing"]["input_per_1k"] < local["pricing"]["output_per_1k"]
    assert local["pricing"]["currency"] == "USD"
    assert remote["pricing"] == {"input_per_1k": 0.5, "output_per_1k": 1.5, "currency": "USD"}
    assert remote["backend"] == "openai" and remote["quality"] == 0.2 and cards[DOWN]["quality"] is None
    assert [m.id for m in client.models.list()] == [LOCAL, REMOTE, DOWN]


def test_sync_answer_equals_raw_llama_cpp_greedy_and_reports_usage(client, raw_llama):
    answer = client.chat.completions.create(model=LOCAL, messages=QUESTION, max_tokens=16, temperature=0, seed=0)
    reference = raw_llama.create_chat_completion(QUESTION, max_tokens=16, temperature=0, seed=0, repeat_penalty=1.0)
    assert answer.choices[0].message.content == reference["choices"][0]["message"]["content"]
    assert answer.choices[0].finish_reason == reference["choices"][0]["finish_reason"]
    assert answer.usage.prompt_tokens == reference["usage"]["prompt_tokens"]
    assert answer.usage.completion_tokens == reference["usage"]["completion_tokens"]
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens
    assert answer.model == LOCAL and answer.id.startswith("chatcmpl-")


def test_stream_matches_the_whole_answer_and_ends_with_usage(client):
    whole = client.chat.completions.create(model=LOCAL, messages=QUESTION, max_tokens=16, temperature=0)
    chunks = list(
        client.chat.completions.create(model=LOCAL, messages=QUESTION, max_tokens=16, temperature=0, stream=True)
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage
    assert all(c.usage is None for c in chunks[:-1])


def test_sse_framing_is_data_blocks_then_done(llm_url):
    body = {"model": LOCAL, "messages": QUESTION, "max_tokens": 4, "stream": True}
    with httpx.stream("POST", f"{llm_url}/v1/chat/completions", json=body, timeout=60) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read().decode()
    blocks = [b for b in raw.split("\n\n") if b.strip() and not b.startswith(":")]
    assert all(b.startswith("data: ") for b in blocks) and blocks[-1] == "data: [DONE]"
    last = json.loads(blocks[-2][len("data: ") :])
    assert last["usage"]["completion_tokens"] == 4 and last["choices"] == []


def test_async_client_streams_and_answers_concurrently(llm_url):
    async def main():
        client = openai.AsyncOpenAI(base_url=f"{llm_url}/v1", api_key="unused", max_retries=0, timeout=120)
        async with client:

            async def streamed():
                stream = await client.chat.completions.create(
                    model=LOCAL, messages=QUESTION, max_tokens=8, temperature=0, stream=True
                )
                return [chunk async for chunk in stream]

            whole, chunks = await asyncio.gather(
                client.chat.completions.create(model=LOCAL, messages=QUESTION, max_tokens=8, temperature=0), streamed()
            )
        return whole, chunks

    whole, chunks = asyncio.run(main())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens == 8


def test_remote_provider_over_http_gives_the_same_greedy_answer(client):
    local = client.chat.completions.create(model=LOCAL, messages=QUESTION, max_tokens=12, temperature=0)
    remote = client.chat.completions.create(model=REMOTE, messages=QUESTION, max_tokens=12, temperature=0)
    assert remote.model == REMOTE
    assert remote.choices[0].message.content == local.choices[0].message.content
    # llama.cpp's server sends no usage in streams: the local tokenizer counts the prompt.
    assert remote.usage.prompt_tokens == local.usage.prompt_tokens
    assert remote.usage.completion_tokens == local.usage.completion_tokens
    chunks = list(
        client.chat.completions.create(model=REMOTE, messages=QUESTION, max_tokens=12, temperature=0, stream=True)
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == local.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == local.usage.completion_tokens


@pytest.mark.parametrize("stream", [False, True])
def test_unreachable_provider_is_a_502_in_openai_shape(client, stream):
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=DOWN, messages=QUESTION, max_tokens=4, stream=stream)
    assert caught.value.status_code == 502
    assert DOWN in caught.value.message and caught.value.body["type"] == "api_error"


def test_json_object_response_format_constrains_the_answer(client):
    answer = client.chat.completions.create(
        model=LOCAL,
        max_tokens=48,
        temperature=0,
        response_format={"type": "json_object"},
        messages=[{"role": "user", "content": "Give a JSON object with the name and age of a person."}],
    )
    content = answer.choices[0].message.content.strip()
    assert content.startswith("{")
    if answer.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(content), dict)


def wait_for_cancellation(llm_url: str, before: str) -> float:
    """Completion tokens the cancelled generation produced, once the bento has recorded it."""
    cancelled = metric(before, "ragyard_llm_generations_total", model=LOCAL, outcome="cancelled")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        after = httpx.get(f"{llm_url}/metrics", timeout=10).text
        if metric(after, "ragyard_llm_generations_total", model=LOCAL, outcome="cancelled") == cancelled + 1:
            return metric(after, "ragyard_llm_completion_tokens_total", model=LOCAL) - metric(
                before, "ragyard_llm_completion_tokens_total", model=LOCAL
            )
        time.sleep(0.2)
    pytest.fail("the abandoned generation was not recorded as cancelled")


LONG = {"model": LOCAL, "messages": QUESTION, "max_tokens": 256, "logit_bias": {str(EOS): -100}}


def test_client_that_disconnects_mid_stream_stops_its_generation(llm_url, client):
    before = httpx.get(f"{llm_url}/metrics", timeout=10).text
    with httpx.stream("POST", f"{llm_url}/v1/chat/completions", json={**LONG, "stream": True}, timeout=60) as response:
        lines = response.iter_lines()
        received = [line for line, _ in zip(lines, range(6), strict=False) if line.startswith("data:")]
    assert len(received) >= 3
    assert wait_for_cancellation(llm_url, before) < 128  # far fewer than the 256 it asked for
    # The model is free again: the next request gets its whole answer.
    answer = client.chat.completions.create(model=LOCAL, messages=QUESTION, max_tokens=4)
    assert answer.usage.completion_tokens == 4


@pytest.mark.parametrize(
    "payload,status,param,needle",
    [
        ({"model": LOCAL, "messages": []}, 400, "messages", "at least 1"),
        ({"model": LOCAL, "messages": [{"role": "wizard", "content": "hi"}]}, 400, "messages", "wizard"),
        ({"model": LOCAL, "messages": [{"role": "user"}]}, 400, "messages", "content"),
        (
            {"model": LOCAL, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            400,
            "messages",
            "type",
        ),
        ({"model": "gpt-17", "messages": QUESTION}, 404, "model", "gpt-17"),
        ({"model": LOCAL, "messages": QUESTION, "max_tokens": 10**9}, 400, "max_tokens", "cap of 256"),
        ({"model": LOCAL, "messages": QUESTION, "max_completion_tokens": 10**9}, 400, "max_completion_tokens", "256"),
        ({"model": LOCAL, "messages": QUESTION, "max_tokens": 0}, 400, "max_tokens", "greater than or equal to 1"),
        ({"model": LOCAL, "messages": QUESTION, "temperature": 7}, 400, "temperature", "less than or equal to 2"),
        ({"model": LOCAL, "messages": QUESTION, "n": 3}, 400, "n", "n"),
        ({"model": LOCAL, "messages": QUESTION, "logit_bias": {"eos": 5}}, 400, "logit_bias", "token ids"),
        (
            {"model": LOCAL, "messages": QUESTION, "response_format": {"type": "yaml"}},
            400,
            "response_format",
            "json_object",
        ),
        (
            {"model": LOCAL, "messages": [{"role": "user", "content": "word " * 3000}]},
            400,
            "messages",
            "maximum context length is 2048 tokens",
        ),
        (
            {"model": LOCAL, "messages": QUESTION, "max_tokens": 200, "stop": ["a", "b", "c", "d", "e"]},
            400,
            "stop",
            "stop",
        ),
    ],
)
def test_bad_inputs_are_4xx_in_openai_shape_naming_the_field(llm_url, payload, status, param, needle):
    response = httpx.post(f"{llm_url}/v1/chat/completions", json=payload, timeout=30)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param and needle in error["message"]
    assert set(error) == {"message", "type", "param", "code"}


def test_context_overflow_names_the_numbers(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=LOCAL, messages=[{"role": "user", "content": "word " * 1900}], max_tokens=200
        )
    message = caught.value.message
    assert caught.value.code == "context_length_exceeded"
    numbers = [int(n) for n in re.findall(r"\d+", message)]
    assert 2048 in numbers and 200 in numbers and any(n > 2048 for n in numbers)


def test_unknown_route_and_method_answer_in_openai_shape(llm_url):
    missing = httpx.post(f"{llm_url}/v1/completions/chat", json={}, timeout=10)
    assert missing.status_code == 404 and "/v1/completions/chat" in missing.json()["error"]["message"]
    wrong_method = httpx.get(f"{llm_url}/v1/chat/completions", timeout=10)
    assert wrong_method.status_code == 404 and "GET /v1/chat/completions" in wrong_method.json()["error"]["message"]


def test_non_json_body_is_a_400(llm_url):
    response = httpx.post(
        f"{llm_url}/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}, timeout=30
    )
    assert response.status_code == 400 and "JSON" in response.json()["error"]["message"]


def test_full_queue_answers_429_with_retry_after_and_serves_the_rest(llm_url):
    body = {"model": LOCAL, "messages": QUESTION, "max_tokens": 24, "logit_bias": {str(EOS): -100}}

    async def main():
        async with httpx.AsyncClient(timeout=120) as http:
            # Streams and whole answers share the queue; half of each.
            return await asyncio.gather(
                *[http.post(f"{llm_url}/v1/chat/completions", json={**body, "stream": i % 2 == 1}) for i in range(8)]
            )

    responses = asyncio.run(main())
    codes = sorted(r.status_code for r in responses)
    # One runs and two wait (queue_size=2); the others are refused at once instead of piling up.
    assert codes == [200] * 3 + [429] * 5, codes
    for refused in (r for r in responses if r.status_code == 429):
        assert refused.headers["retry-after"] == "2"
        assert refused.json()["error"]["type"] == "rate_limit_error"
    for served in (r for r in responses if r.status_code == 200):
        if served.headers["content-type"].startswith("text/event-stream"):
            usage = json.loads(served.text.split("data: ")[-2])["usage"]
        else:
            usage = served.json()["usage"]
        assert usage["completion_tokens"] == 24


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_forced_tool_call_comes_back_whole_and_streamed(client):
    request = {
        "model": LOCAL,
        "max_tokens": 40,
        "temperature": 0,
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
    }
    answer = client.chat.completions.create(**request)
    call = answer.choices[0].message.tool_calls[0]
    assert answer.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    assert set(json.loads(call.function.arguments)) == {"city"}
    chunks = list(client.chat.completions.create(stream=True, **request))
    deltas = [d for c in chunks if c.choices for d in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].function.name == "get_weather" and all(d.function.name is None for d in deltas[1:])
    assert "".join(d.function.arguments for d in deltas) == call.function.arguments


def test_client_that_gives_up_on_a_whole_answer_stops_its_generation(llm_url, client):
    before = httpx.get(f"{llm_url}/metrics", timeout=10).text
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{llm_url}/v1/chat/completions", json=LONG, timeout=httpx.Timeout(10, read=0.3))
    assert wait_for_cancellation(llm_url, before) < 256
    answer = client.chat.completions.create(model=LOCAL, messages=QUESTION, max_tokens=4)
    assert answer.usage.completion_tokens == 4
