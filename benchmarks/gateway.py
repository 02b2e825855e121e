"""Gateway benchmark: what the router bento adds in front of an upstream, and what its cache saves.

`ragyard bench gateway`. Three processes on loopback: `stub_app` below, a deliberately
trivial OpenAI-compatible upstream (THE STUB: a fixed answer, no model) served by uvicorn; the
router bento in front of it; and llama.cpp's server with SmolLM2 for real generations.

1. Overhead: the same non-streamed chat completion sent to the stub directly and through the router
   (auth, per-key limits with their reservation, catalog, generation proxy, cost, trace, metrics;
   caches off, no retrieval: the proxy path) - p50/p99 latency one request at a time, and
   requests/s with 8 and 32 concurrent clients. Twice: a router with its state in SQLite files
   (the default) and one with its state in PostgreSQL (pgserver on a unix socket, as replicas share it).
2. Cache: a SmolLM2 generation (64 tokens) through the router vs the same request again, answered
   from the exact response cache.

Safety is switched off (no safety bento here) and traces go to an MLflow URL nobody listens on:
the router's exporter drops them in the background, which is part of what is measured.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from benchmarks.measure import free_port, percentiles
from bentos.llm.models import resolve_gguf
from ragyard.docs_report import write_section
from ragyard.services import REPO_ROOT, bento_spec
from ragyard.settings import LLMSettings, MlflowSettings, RouterSettings, Settings
from ragyard.supervisor import ServiceSpec, Supervisor
from ragyard.tokens import estimate_prompt_tokens
from router.keys import KeyStore
from router.state import database

STUB_MODEL = "stub-echo"
STUB_ANSWER = "This is the stub upstream's fixed answer."


# ---- the stub upstream (not a model: a fixed answer, so that only the gateway is measured) ------


async def _stub_models(_: Request) -> JSONResponse:
    return JSONResponse(
        {
            "object": "list",
            "data": [
                {
                    "id": STUB_MODEL,
                    "object": "model",
                    "created": 0,
                    "owned_by": "benchmark-stub",
                    "context_length": 4096,
                    "pricing": {"input_per_1k": 0.0001, "output_per_1k": 0.0002, "currency": "USD"},
                    "quality": None,
                    "backend": "stub",
                }
            ],
        }
    )


async def _stub_chat(request: Request) -> JSONResponse:
    body = await request.json()
    prompt_tokens = estimate_prompt_tokens([str(m.get("content") or "") for m in body.get("messages", [])])
    return JSONResponse(
        {
            "id": "chatcmpl-stub",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": STUB_ANSWER}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 9, "total_tokens": prompt_tokens + 9},
        }
    )


stub_app = Starlette(
    routes=[Route("/v1/models", _stub_models), Route("/v1/chat/completions", _stub_chat, methods=["POST"])]
)


# ---- measuring ------------------------------------------------------------------------------


async def _latencies(url: str, headers: dict, bodies: list[dict]) -> list[float]:
    """One request at a time; milliseconds each."""
    out = []
    async with httpx.AsyncClient(timeout=120) as client:
        for body in bodies:
            started = time.perf_counter()
            response = await client.post(url, json=body, headers=headers)
            out.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
    return out


async def _throughput(url: str, headers: dict, body: dict, concurrency: int, total: int) -> float:
    """Requests per second with `concurrency` clients sending `total` requests in all."""
    remaining = total
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            (await client.post(url, json=body, headers=headers)).raise_for_status()

    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        await client.post(url, json=body, headers=headers)  # warm the connection pool
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return total / (time.perf_counter() - started)


async def _overhead(router: str, stub: str, key: str, samples: int, per_level: int) -> dict:
    """Latencies one at a time and requests/s at 8 and 32 clients: the stub alone, then through `router`."""
    auth = {"Authorization": f"Bearer {key}", "X-Ragyard-Cache": "off"}
    body = {"model": STUB_MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "What is a list?"}]}
    bodies = [body] * samples
    await _latencies(f"{router}/v1/chat/completions", auth, bodies[:20])  # warm-up
    rps: dict[int, tuple[float, float]] = {}
    results = {
        "direct": await _latencies(f"{stub}/v1/chat/completions", {}, bodies),
        "routed": await _latencies(f"{router}/v1/chat/completions", auth, bodies),
        "rps": rps,
    }
    for concurrency in (8, 32):
        rps[concurrency] = (
            await _throughput(f"{stub}/v1/chat/completions", {}, body, concurrency, per_level),
            await _throughput(f"{router}/v1/chat/completions", auth, body, concurrency, per_level),
        )
    return results


async def _cache(router: str, key: str) -> dict:
    """SmolLM2 generations through `router`, then the same requests answered from its exact cache."""
    auth = {"Authorization": f"Bearer {key}"}
    questions = [
        f"Explain Python's {topic} in two sentences."
        for topic in ("lists", "tuples", "dictionaries", "sets", "generators")
    ]
    generation = [
        {"model": "smollm2-135m", "max_tokens": 64, "temperature": 0, "messages": [{"role": "user", "content": q}]}
        for q in questions
    ]
    full = await _latencies(f"{router}/v1/chat/completions", auth, generation)
    return {"full": full, "hit": await _latencies(f"{router}/v1/chat/completions", auth, generation * 4)}


def _overhead_table(name: str, results: dict) -> str:
    direct, routed = percentiles(results["direct"]), percentiles(results["routed"])
    p50d, p99d, p50r, p99r = direct["p50"], direct["p99"], routed["p50"], routed["p99"]
    rows = "\n".join(f"| {c} | {d:.0f} | {r:.0f} | {r / d:.2f} |" for c, (d, r) in results["rps"].items())
    return f"""**Router state in {name}**

| path | p50 ms | p99 ms |
| --- | --- | --- |
| stub directly | {p50d:.1f} | {p99d:.1f} |
| through the router | {p50r:.1f} | {p99r:.1f} |
| **added by the router** | **{p50r - p50d:.1f}** | **{p99r - p99d:.1f}** |

| concurrent clients | stub req/s | router req/s | ratio |
| --- | --- | --- | --- |
{rows}
"""


def main() -> None:
    import pgserver

    samples = int(os.environ.get("RAGYARD_BENCH_GATEWAY_SAMPLES", "300"))
    per_level = int(os.environ.get("RAGYARD_BENCH_GATEWAY_REQUESTS", "600"))
    with tempfile.TemporaryDirectory(prefix="ragyard-bench-gateway-") as tmp:
        stub_port, llama_port, router_port, pg_router_port = free_port(), free_port(), free_port(), free_port()
        stub = f"http://127.0.0.1:{stub_port}"
        settings = Settings(
            home=Path(tmp) / "home",
            mlflow=MlflowSettings(url=f"http://127.0.0.1:{free_port()}"),
            llm=LLMSettings(port=stub_port),
            router=RouterSettings(
                port=router_port, safety_enabled=False, extra_upstreams=[f"http://127.0.0.1:{llama_port}"]
            ),
        )
        postgres = pgserver.get_server(Path(tmp) / "postgres", cleanup_mode="stop")
        pg_settings = settings.model_copy(
            update={
                "router": settings.router.model_copy(update={"port": pg_router_port, "state_url": postgres.get_uri()})
            }
        )
        keys = {
            name: KeyStore(database(s, "keys")).create("benchmark")[1]
            for name, s in (("sqlite", settings), ("postgres", pg_settings))
        }
        bin_dir = Path(sys.executable).parent
        specs = [
            ServiceSpec(
                name="stub-upstream",
                argv=[
                    str(bin_dir / "uvicorn"),
                    "benchmarks.gateway:stub_app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(stub_port),
                    "--log-level",
                    "warning",
                ],
                health_url=f"{stub}/v1/models",
                cwd=str(REPO_ROOT),
            ),
            ServiceSpec(
                name="llama",
                argv=[
                    str(bin_dir / "python"),
                    "-m",
                    "llama_cpp.server",
                    "--model",
                    str(resolve_gguf("smollm2-135m", settings.llm_models_dir)),
                    "--model_alias",
                    "smollm2-135m",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(llama_port),
                    "--n_ctx",
                    "2048",
                    "--n_threads",
                    "1",
                ],
                health_url=f"http://127.0.0.1:{llama_port}/v1/models",
            ),
            bento_spec(settings, "router", "bentos.router.service:Router", router_port, "/readyz"),
            bento_spec(pg_settings, "router-postgres", "bentos.router.service:Router", pg_router_port, "/readyz"),
        ]
        try:
            with Supervisor(settings.logs_dir) as supervisor:
                supervisor.start_all(specs)
                sqlite = asyncio.run(
                    _overhead(f"http://127.0.0.1:{router_port}", stub, keys["sqlite"], samples, per_level)
                )
                shared = asyncio.run(
                    _overhead(f"http://127.0.0.1:{pg_router_port}", stub, keys["postgres"], samples, per_level)
                )
                cache = asyncio.run(_cache(f"http://127.0.0.1:{router_port}", keys["sqlite"]))
        finally:
            postgres.cleanup()
    full, hit = statistics.median(cache["full"]), statistics.median(cache["hit"])
    load = os.getloadavg()[0]
    body = f"""
The router bento (`bentos/router/service.py`) in front of a stub OpenAI-compatible upstream
(`benchmarks/gateway.py:stub_app`, a fixed answer: the upstream costs ~nothing, so the difference
is the gateway) against calling the stub directly; non-streamed requests, caches off, safety off,
auth and per-key limits on. Two routers side by side: state (keys, budget reservations) in SQLite
files, the default, and in PostgreSQL 16 (pgserver, unix socket), as several replicas would share
it. Load average at the end: {load:.1f} on {os.cpu_count()} cores.

{_overhead_table("SQLite (default)", sqlite)}
{_overhead_table("PostgreSQL", shared)}
Cache: a 64-token SmolLM2-135M generation through the router (llama.cpp, 1 thread) took
{full:.0f} ms (median of {len(cache["full"])}); the same requests answered from the exact response
cache took {hit:.1f} ms (median of {len(cache["hit"])}): {full / hit:.0f}x faster.
"""
    print(body)
    write_section("Gateway overhead (router bento)", body)
