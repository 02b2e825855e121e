"""Safety benchmark: latency of `POST /check` on a 200-word input, and throughput at 8 clients.

`ragyard bench safety`: a fresh data directory and a real `bentoml serve` of the safety
bento on loopback; the default policy, input direction (all three detectors run). Baselines, in
the same run: the same check in this process (the bento's own `SafetyChecker` on the same data
directory, calls alternating with the HTTP requests so that both see the same load), and one
client for the concurrent throughput.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx  # noqa: E402

from benchmarks.measure import free_port, load, percentiles  # noqa: E402
from bentos.safety.checker import SafetyChecker  # noqa: E402
from ragyard.docs_report import write_section  # noqa: E402
from ragyard.services import safety_spec  # noqa: E402
from ragyard.settings import SafetySettings, Settings  # noqa: E402
from ragyard.supervisor import Supervisor  # noqa: E402

SEQUENTIAL_REQUESTS = 100
CONCURRENT_CLIENTS = 8
REQUESTS_PER_CLIENT = 25

# 200 words of an ordinary support question with one email and one phone number in it.
_SENTENCES = [
    "I am trying to read a large CSV file with the csv module and process each row as it arrives.",
    "The file is about two gigabytes and my script runs out of memory when I call list on the reader.",
    "Could you explain how iterators and generators help here, and whether I should use a with block?",
    "My colleague suggested pandas, but I would rather stay with the standard library for this job.",
    "If it helps, you can reach me at priya.raman@example.com or on (415) 555-0199 during office hours.",
    "I also wonder how to handle rows with a different number of fields without crashing the loop.",
    "Should I catch csv.Error for each row, or validate the header first and skip the broken lines?",
    "Finally, what is the right way to write the cleaned rows to a new file while reading the old one?",
]


def two_hundred_words() -> str:
    words: list[str] = []
    while len(words) < 200:
        words += " ".join(_SENTENCES).split()
    return " ".join(words[:200])


def alternating(client: httpx.Client, url: str, body: dict, checker: SafetyChecker, count: int) -> tuple[list, list]:
    """(HTTP, in-process) seconds per check, the two taking turns."""
    served, in_process = [], []
    for _ in range(count):
        served.append(timed_checks(client, url, body, 1)[0])
        started = time.perf_counter()
        checker.check(body["text"], body["direction"], body["policy"])
        in_process.append(time.perf_counter() - started)
    return served, in_process


def timed_checks(client: httpx.Client, url: str, body: dict, count: int) -> list[tuple[float, float]]:
    """(client-side seconds, server latency_ms) per request."""
    out = []
    for _ in range(count):
        started = time.perf_counter()
        response = client.post(f"{url}/check", json=body)
        elapsed = time.perf_counter() - started
        response.raise_for_status()
        out.append((elapsed, response.json()["latency_ms"]))
    return out


def main() -> None:
    text = two_hundred_words()
    body = {"text": text, "direction": "input", "policy": "default"}
    with tempfile.TemporaryDirectory(prefix="ragyard-bench-safety-") as tmp:
        settings = Settings(home=Path(tmp) / "home", safety=SafetySettings(port=free_port()))
        url = settings.safety.url
        with Supervisor(settings.logs_dir) as supervisor, httpx.Client(timeout=120) as client:
            supervisor.start_all([safety_spec(settings)])
            load_before = load()
            first = client.post(f"{url}/check", json=body).json()
            checker = SafetyChecker(settings.safety, settings.home)  # the model files the bento made
            alternating(client, url, body, checker, 5)  # warm-up
            sequential, in_process = alternating(client, url, body, checker, SEQUENTIAL_REQUESTS)
            one_client_rps = len(sequential) / sum(s for s, _ in sequential)

            def one_client(_: int) -> list[tuple[float, float]]:
                with httpx.Client(timeout=120) as own:
                    return timed_checks(own, url, body, REQUESTS_PER_CLIENT)

            started = time.perf_counter()
            with ThreadPoolExecutor(CONCURRENT_CLIENTS) as pool:
                concurrent = [r for rs in pool.map(one_client, range(CONCURRENT_CLIENTS)) for r in rs]
            concurrent_s = time.perf_counter() - started
            load_after = load()
    latencies_ms = [s * 1000 for s, _ in sequential]
    in_process_ms = statistics.median(in_process) * 1000
    concurrent_rps = len(concurrent) / concurrent_s
    findings = ", ".join(sorted({f"{f['category']}:{f['type']}" for f in first["findings"]})) or "none"
    result = f"""
Input: 200 words ({len(text)} characters, {len(text.encode())} bytes) with one email and one phone
number; policy `default`, direction `input` (PII, injection and toxicity detectors all run);
answer: action `{first["action"]}`, findings {findings}. One `bentoml serve` process on loopback.
Machine load average (1/5/15 min) before: {load_before}; after: {load_after} (other work shared the 2 cores).

| measurement | value |
| --- | --- |
| p50 latency, 1 client, {SEQUENTIAL_REQUESTS} requests | **{statistics.median(latencies_ms):.1f} ms** |
| p99 latency, 1 client | **{percentiles(latencies_ms)["p99"]:.1f} ms** |
| server-side `latency_ms` p50 (detectors only) | {statistics.median(ms for _, ms in sequential):.1f} ms |
| in-process `SafetyChecker.check` p50 (baseline, alternating with the requests) | {in_process_ms:.1f} ms |
| added by serving over HTTP, p50 | {statistics.median(latencies_ms) - in_process_ms:+.1f} ms ({statistics.median(latencies_ms) / in_process_ms:.2f}x in-process) |
| throughput, 1 client (baseline) | {one_client_rps:.1f} req/s |
| throughput, {CONCURRENT_CLIENTS} concurrent clients, {len(concurrent)} requests | **{concurrent_rps:.1f} req/s** ({concurrent_rps / one_client_rps:.2f}x the 1-client baseline) |
| p50 / p99 latency at {CONCURRENT_CLIENTS} clients | {statistics.median(s * 1000 for s, _ in concurrent):.1f} / {percentiles([s * 1000 for s, _ in concurrent])["p99"]:.1f} ms |
"""
    write_section("Safety /check", result)
    print(result)
