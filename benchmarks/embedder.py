"""Embedder benchmark: every embedding backend against torch on the same texts, then the bento.

`ragyard bench embedder`. Texts are real chunks of the Python docs (parsed and chunked by the
ingestion code), distinct. (1) Backends: in this process, torch and each other backend encode the
same texts in turns, round after round (torch, backend, torch, backend, ...), so that each pair sees
the same machine load; the ratio of a backend is the median over rounds of torch's time over its
time, in wall-clock and in CPU time of this process. (2) The bento (`bentoml serve`, the configured
backend, cache on) on loopback against the raw in-process model of the same backend: each throughput
pass is timed right after the raw encode of the same texts, and every request misses the cache.
(3) Single-text latency (the router's query path): the retrieval eval's questions, one client, one
request at a time.

Environment: RAGYARD_BENCH_BACKEND_TEXTS (texts per backend round, default 256),
RAGYARD_BENCH_ROUNDS (default 3), RAGYARD_BENCH_EMBED_TEXTS (bento texts, default 512; split
between the two request sizes), RAGYARD_BENCH_CLIENTS (default 16), RAGYARD_BENCH_QUERIES
(questions, default all 234).
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx  # noqa: E402
import numpy as np  # noqa: E402

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
from ragyard.embedding import BACKENDS, EmbeddingModel  # noqa: E402
from ragyard.services import embedder_spec  # noqa: E402
from ragyard.settings import EmbedderSettings, Settings  # noqa: E402
from ragyard.supervisor import Supervisor  # noqa: E402

TEXTS_PER_REQUEST = (1, 16)


def distinct_chunks(settings: Settings, count: int, exclude: set[str]) -> list[str]:
    texts = sorted(set(_all_chunk_texts(settings)) - exclude)
    if len(texts) < count:
        raise ValueError(f"only {len(texts)} distinct chunk texts, {count} asked for")
    return random.Random(0).sample(texts, count)


def timed_cpu(model: EmbeddingModel, texts: list[str]) -> tuple[np.ndarray, float, float]:
    """Vectors, wall seconds, and CPU seconds of this process (every thread) for one encode."""
    wall, cpu = time.perf_counter(), time.process_time()
    vectors = model.encode(texts)
    return vectors, time.perf_counter() - wall, time.process_time() - cpu


def backend_rounds(settings: Settings, texts: list[str], rounds: int) -> list[dict]:
    """Each backend against torch on the same texts, alternating, `rounds` times."""
    models = {
        b: EmbeddingModel(
            settings.embedder.model,
            batch_size=settings.embedder.batch_size,
            backend=b,
            models_dir=settings.embedder.models_folder(settings.home),
        )
        for b in BACKENDS
    }
    for model in models.values():
        model.encode(["warm-up on the main thread"])
    results = []
    for backend in BACKENDS[1:]:
        pairs = []
        for _ in range(rounds):
            base, base_wall, base_cpu = timed_cpu(models["torch"], texts)
            ours, wall, cpu = timed_cpu(models[backend], texts)
            pairs.append((base_wall, base_cpu, wall, cpu))
        cosines = (ours * base).sum(axis=1)  # both unit length
        results.append(
            {
                "backend": backend,
                "precision": models[backend].precision,
                "torch_rate": len(texts) / statistics.median(p[0] for p in pairs),
                "rate": len(texts) / statistics.median(p[2] for p in pairs),
                "wall_ratio": statistics.median(p[0] / p[2] for p in pairs),
                "cpu_ratio": statistics.median(p[1] / p[3] for p in pairs),
                "torch_cpu_ms": 1000 * statistics.median(p[1] for p in pairs) / len(texts),
                "cpu_ms": 1000 * statistics.median(p[3] for p in pairs) / len(texts),
                "cos_min": float(cosines.min()),
                "cos_mean": float(cosines.mean()),
            }
        )
    return results


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
    backend_texts = env_int("RAGYARD_BENCH_BACKEND_TEXTS", 256)
    rounds = env_int("RAGYARD_BENCH_ROUNDS", 3)
    load_before = load()
    with tempfile.TemporaryDirectory(prefix="ragyard-bench-embedder-") as tmp:
        settings = Settings(home=Path(tmp) / "home", embedder=EmbedderSettings(port=free_port()))
        limits = settings.embedder
        queries = questions()[: env_int("RAGYARD_BENCH_QUERIES", 10_000)]
        texts = distinct_chunks(settings, count + backend_texts, exclude=set(queries))
        backends = backend_rounds(settings, texts[count:], rounds)
        load_middle = load()
        halves = [texts[: count // 2], texts[count // 2 : count]]
        model = EmbeddingModel.from_settings(settings)
        model.encode(["warm-up of the in-process model"])
        with Supervisor(settings.logs_dir) as supervisor:
            supervisor.start_all([embedder_spec(settings)])
            single = single_text_latency(model, limits.url, supervisor.pids()["embedder"], queries)
            passes = [
                throughput_pass(model, limits.url, half, per_request, clients)
                for half, per_request in zip(halves, TEXTS_PER_REQUEST, strict=True)
            ]
    load_after = load()

    backend_rows = "\n".join(
        f"| {b['backend']} | {b['precision']} | {b['torch_rate']:.1f} | {b['rate']:.1f} | **{b['wall_ratio']:.2f}** "
        f"| {b['torch_cpu_ms']:.1f} / {b['cpu_ms']:.1f} | **{b['cpu_ratio']:.2f}** "
        f"| {b['cos_min']:.5f} / {b['cos_mean']:.5f} |"
        for b in backends
    )
    rows = "\n".join(
        f"| {p['per_request']} | {p['texts']} | {p['raw_rate']:.1f} | {p['bento_rate']:.1f} | **{p['ratio']:.2f}** "
        f"| {fmt(p['latency'])} |"
        for p in passes
    )
    body = f"""
Model {limits.model}, batch size {limits.batch_size}, threads: one per core. Texts: distinct chunks of the
Python docs.

**Backends against torch** ({backend_texts} chunks, median {sorted(map(len, texts[count:]))[backend_texts // 2]}
characters; {rounds} rounds of torch then the backend on the same texts, in this process; medians of the
rounds). Load average (1/5/15 min) before: {load_before}; after: {load_middle} (2 cores, shared machine:
the wall-clock ratio moves with the load, the CPU-time ratio much less).

| backend | precision | torch chunks/s | backend chunks/s | **wall-clock ratio** | CPU ms per chunk, torch / backend | **CPU-time ratio** | cosine to torch min / mean |
| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |
{backend_rows}

**The bento** on the configured backend, **{limits.backend}** ({model.precision}): `bentoml serve`, default
settings, cache on, on loopback, {clients} concurrent httpx clients in this process, against the raw in-process
`EmbeddingModel.encode` of the same texts ({count} chunks, each sent once, so every request misses the cache)
just before each pass. Load average after: {load_after}.

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

The bento warms its model up on the main thread before `/readyz`, and no backend's threads spin while
they wait (`OMP_WAIT_POLICY=PASSIVE` for torch, no intra-op spinning for ONNX Runtime): on cores shared
with other processes, a spinning thread takes the CPU its preempted peer needs (see `ragyard/embedding/`).
"""
    write_section("Embedder", body)
    print(body)
