"""Helpers shared by the serving benchmarks: ports, percentiles, machine load, timed HTTP clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
from pathlib import Path

import httpx
import numpy as np
import psutil

DATASET = Path(__file__).resolve().parent.parent / "evals" / "datasets" / "python_docs_retrieval.jsonl"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value else default


def questions() -> list[str]:
    """The retrieval eval's questions: real, distinct user queries about the Python docs."""
    return [json.loads(line)["question"] for line in DATASET.read_text(encoding="utf-8").splitlines() if line.strip()]


def tree_cpu_seconds(root_pid: int) -> float:
    """CPU time (user + system) used so far by a live process and its live descendants.

    Less sensitive to other processes on a shared machine than wall time: it counts only this work.
    """
    root = psutil.Process(root_pid)
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):  # it ended meanwhile
            times = process.cpu_times()
            total += times.user + times.system
    return total


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def percentiles(ms: list[float]) -> dict[str, float]:
    values = np.asarray(ms, dtype=np.float64)
    return {
        "p50": float(np.percentile(values, 50)),
        "p99": float(np.percentile(values, 99)),
        "mean": float(values.mean()),
        "n": len(values),
    }


def fmt(summary: dict[str, float]) -> str:
    return f"{summary['p50']:.1f} / {summary['p99']:.1f}"


def timed_ms(function, *args, **kwargs):
    started = time.perf_counter()
    value = function(*args, **kwargs)
    return value, (time.perf_counter() - started) * 1000


def post_each(client: httpx.Client, path: str, bodies: list[dict]) -> tuple[list[dict], list[float]]:
    """POST the bodies one after another; their responses and latencies in ms. Any non-200 is an error."""
    answers, latencies = [], []
    for body in bodies:
        response, ms = timed_ms(client.post, path, json=body)
        if response.status_code != 200:
            raise RuntimeError(f"POST {path} answered {response.status_code}: {response.text[:300]}")
        answers.append(response.json())
        latencies.append(ms)
    return answers, latencies


def post_concurrently(
    url: str, path: str, bodies: list[dict], clients: int, timeout_s: float = 300.0
) -> tuple[float, list[float]]:
    """`clients` connections POST the bodies, each taking the next one when done; wall seconds and latencies."""

    async def run() -> tuple[float, list[float]]:
        queue: asyncio.Queue[dict] = asyncio.Queue()
        for body in bodies:
            queue.put_nowait(body)
        latencies: list[float] = []
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(base_url=url, timeout=timeout_s, limits=limits) as http:

            async def client() -> None:
                while not queue.empty():
                    body = queue.get_nowait()
                    started = time.perf_counter()
                    response = await http.post(path, json=body)
                    latencies.append((time.perf_counter() - started) * 1000)
                    if response.status_code != 200:
                        raise RuntimeError(f"POST {path} answered {response.status_code}: {response.text[:300]}")

            started = time.perf_counter()
            await asyncio.gather(*(client() for _ in range(clients)))
            return time.perf_counter() - started, latencies

    return asyncio.run(run())
