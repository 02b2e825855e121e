"""Prometheus metrics of the memory bento, served on its /metrics (created on first use: ragyard.kit.metrics)."""

from __future__ import annotations

from ragyard.kit.metrics import LazyMetric, counter, histogram

JOBS = counter(
    "ragyard_memory_extraction_jobs",
    "Exchanges sent for extraction, by how they ended: done, failed (the exchange cannot be used), "
    "dropped (still failing at memory.job_max_age_s)",
    ["outcome"],
)
RETRIES = counter(
    "ragyard_memory_extraction_retries",
    "Extraction attempts that will be retried, by the service that could not answer "
    "(llm, safety, embedder, milvus, database, store)",
    ["dependency"],
)
QUEUED = LazyMetric(
    "Gauge",
    "ragyard_memory_extraction_queue",
    "Exchanges waiting for extraction or being extracted",
    (),
    multiprocess_mode="livesum",
)
REFUSED = counter("ragyard_memory_extraction_refused", "Exchanges refused because the extraction queue was full")
SECONDS = histogram(
    "ragyard_memory_extraction_seconds",
    "Time from an exchange's acceptance to its memories",
    buckets=(0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 900),
)
OPERATIONS = counter(
    "ragyard_memory_operations",
    "Memory writes by operation: add, update, delete, duplicate, dropped (an extraction proposal the gate "
    "refused), evicted (over memory.max_per_user), expired",
    ["op"],
)
