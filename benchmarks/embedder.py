"""Embedder benchmark: the bento under concurrent HTTP clients against raw in-process encoding.

`ragyard bench embedder` starts the embedder bento (`bentoml serve`, default settings, so
the cache is on) on loopback and, in this process, the same model. Texts are real chunks of the
Python docs (parsed and chunked by the ingestion code), distinct, each sent once: every throughput
request misses the cache. Each throughput pass is timed right after the raw encode of the same
texts, so that both see the same machine load. Single-text latency (the router's query path) uses
the retrieval eval's questions, one client, one request at a time.

Environment: RAGYARD_BENCH_EMBED_TEXTS (chunk texts, default 512; split between the two request
sizes), RAGYARD_BENCH_CLIENTS (default 16), RAGYARD_BENCH_QUERIES (questions, default all 234).
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx  # noqa: E402

from benchmarks.ingest import _all_chunk_texts  # noqa: E402
from benchmarks.measure import (  # noqa: E402
    env_int,
    fmt,
    free_port,
    load,
    percentiles,
    post_concurrently,
    post_each,
    questions,
    timed_ms,
    tree_cpu_seconds,
)
from ragyard.docs_report import write_section  # noqa: E402
from ragyard.embedding import EmbeddingModel  # noqa: E402
from ragyard.services import embedder_spec  # noqa: E402
from ragyard.settings import EmbedderSettings, Settings  # noqa: E402
from ragyard.supervisor import Supervisor  # noqa: E402

TEXTS_PER_REQUEST = (1, 16)


def distinct_chunks(settings: Settings, count: int, exclude: set[str]) -> list[str]:
    texts = sorted(set(_all_chunk_texts(settings)) - exclude)
    if len(texts) < count:
        raise ValueError(f"only {len(texts)} distinct chunk texts, {count} asked for")
    return random.Random(0).sample(texts, count)


def throughput_pass(model: EmbeddingModel, url: str, texts: list[str], per_request: int, clients: int) -> dict:
    """Raw encode of `texts`, then the same texts through the bento, `per_request` texts a request."""
    _, raw_ms = timed_ms(model.encode, texts)
    bodies = [{"texts": texts[i : i + per_request]} for i in range(0, len(texts), per_request)]
    wall_s, latencies = post_concurrently(url, "/embed", bodies, clients)
    raw_rate, bento_rate = len(texts) / (raw_ms / 1000), len(texts) / wall_s
    return {
        "per_request": per_request,
        "texts": len(texts),
        "raw_rate": raw_rate,
        "bento_rate": bento_rate,
        "ratio": bento_rate / raw_rate,
        "latency": percentiles(latencies),
    }


def single_text_latency(model: EmbeddingModel, url: str, bento_pid: int, queries: list[str]) -> dict:
    """Sequential single-text requests, with the CPU time they cost the bento's processes."""
    with httpx.Client(base_url=url, timeout=60) as client:
        _, first = post_each(client, "/embed", [{"texts": ["the first request after /readyz"]}])
        cpu_before = tree_cpu_seconds(bento_pid)
        _, uncached = post_each(client, "/embed", [{"texts": [q]} for q in queries])
        cpu_uncached = tree_cpu_seconds(bento_pid) - cpu_before
        _, cached = post_each(client, "/embed", [{"texts": [q]} for q in queries])
    cpu_before = time.process_time()
    raw = [timed_ms(model.encode, [q])[1] for q in queries]
    cpu_raw = time.process_time() - cpu_before
    return {
        "first": first[0],
        "uncached": percentiles(uncached),
        "cached": percentiles(cached),
        "raw": percentiles(raw),
        "cpu_uncached_ms": 1000 * cpu_uncached / len(queries),
        "cpu_raw_ms": 1000 * cpu_raw / len(queries),
    }


def main() -> None:
    count = env_int("RAGYARD_BENCH_EMBED_TEXTS", 512)
    clients = env_int("RAGYARD_BENCH_CLIENTS", 16)
    load_before = load()
    with tempfile.TemporaryDirectory(prefix="ragyard-bench-embedder-") as tmp:
        settings = Settings(home=Path(tmp) / "home", embedder=EmbedderSettings(port=free_port()))
        limits = settings.embedder
        queries = questions()[: env_int("RAGYARD_BENCH_QUERIES", 10_000)]
        texts = distinct_chunks(settings, count, exclude=set(queries))
        halves = [texts[: count // 2], texts[count // 2 :]]
        model = EmbeddingModel(limits.model, device=limits.device, batch_size=limits.batch_size)
        model.encode(["warm-up of the in-process model"])
        with Supervisor(settings.logs_dir) as supervisor:
            supervisor.start_all([embedder_spec(settings)])
            single = single_text_latency(model, limits.url, supervisor.pids()["embedder"], queries)
            passes = [
                throughput_pass(model, limits.url, half, per_request, clients)
                for half, per_request in zip(halves, TEXTS_PER_REQUEST, strict=True)
            ]
    load_after = load()

    rows = "\n".join(
        f"| {p['per_request']} | {p['texts']} | {p['raw_rate']:.1f} | {p['bento_rate']:.1f} | **{p['ratio']:.2f}** "
        f"| {fmt(p['latency'])} |"
        for p in passes
    )
    body = f"""
Model {limits.model} on CPU, batch size {limits.batch_size}, torch's default threads (one per core);
the bento (`bentoml serve`, default settings, cache on) on loopback, {clients} concurrent httpx
clients in this process. Texts: {count} distinct chunks of the Python docs (median
{sorted(map(len, texts))[len(texts) // 2]} characters), each sent once, so every request misses the
cache; the raw in-process `EmbeddingModel.encode` of the same texts runs just before each pass.
Load average (1/5/15 min) before: {load_before}; after: {load_after} (2 cores, shared machine).

| texts per request | texts | raw texts/s | bento texts/s | **bento / raw** (target ≥ 0.8) | request p50 / p99 ms |
| ---: | ---: | ---: | ---: | ---: | ---: |
{rows}

Single-text requests, one client, one at a time ({len(queries)} eval questions; the router's query path):

| single text | p50 / p99 ms | CPU ms per text |
| --- | ---: | ---: |
| `POST /embed`, uncached | {fmt(single["uncached"])} | {single["cpu_uncached_ms"]:.1f} (bento processes) |
| `POST /embed`, cache hit (same questions again) | {fmt(single["cached"])} | |
| raw in-process `encode([question])` | {fmt(single["raw"])} | {single["cpu_raw_ms"]:.1f} |
| first request after `/readyz` | {single["first"]:.1f} (one request) | |

Why one uncached single text once took ~580 ms: py-spy showed the time in torch's forward pass,
not in BentoML or our code, and the bento used ~10x the CPU per single-text request that the same
forward takes in a plain script. torch's OpenMP threads were spinning: libgomp's default lets a
thread that finished its share spin at the end of every parallel region, and on two cores shared
with other processes the spinning thread takes the CPU its preempted peer needs. It showed when the
thread that ran the process's first forward pass was a worker thread, as in the bento, which ran
its first forward lazily on the first request's thread. Two fixes, each enough on its own in these
measurements, both applied: `OMP_WAIT_POLICY=PASSIVE` before torch loads
(`ragyard/embedding.py`) and a warm-up forward pass on the main thread in the service's
`__init__`, before `/readyz`. Before / after, measured 2026-11-27 11:00-11:10 UTC at load average
17-20, 30 single-text requests per bento, the bentos taking turns on each request:

| bento | CPU ms per request | p50 ms | first request ms |
| --- | ---: | ---: | ---: |
| before (first forward on a request thread, libgomp default) | 277-288 | 1060-1100 | 1560-2410 |
| warm-up on the main thread only | 34-35 | 63-132 | 49-102 |
| `OMP_WAIT_POLICY=PASSIVE` only | 32 | 53 | 44 |

The same in a plain script (load ~17): first forward on a pool thread and later ones on that
thread, 274 ms of CPU per short text; warm-up on the main thread first, 21-27 ms; with PASSIVE, 28-30 ms.
"""
    write_section("Embedder", body)
    print(body)
