"""Vector index benchmark: a synthetic clustered collection in milvus-lite, every ANN index type it takes.

`ragyard bench vector_index`: RAGYARD_BENCH_ANN_ROWS vectors (default 1,000,000; 50,000 is
enough while developing) of dim 384, unit length, drawn around RAGYARD_BENCH_ANN_ROWS // 1000
cluster centres with a spread that differs per cluster, so that nearest neighbours are a real
structure (uniform noise in 384 dims has none: every vector is about equally far from every other).
Queries (RAGYARD_BENCH_ANN_QUERIES, default 1000) are new draws from the same clusters;
RAGYARD_BENCH_ANN_TYPES (comma-separated, default all) limits the index types tried. Exact top-10
by brute force in numpy is the ground truth for recall@10; each index type is built, loaded and
searched one query at a time, and what milvus-lite refuses is reported as refused.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from pymilvus import DataType, MilvusClient

from benchmarks.measure import env_int, free_port, load, percentiles, timed_ms
from ragyard import collection as col
from ragyard.docs_report import write_section
from ragyard.services import milvus_spec
from ragyard.settings import MilvusSettings, Settings
from ragyard.supervisor import Supervisor

DIM = 384
TOP_K = 10
COLLECTION = "bench_vectors"
INSERT_BATCH = 10_000
FLAT_QUERIES = 100  # exact search in Milvus scans every row: fewer queries keep the run short
METRIC = "COSINE"  # what the chunk collection uses; on unit vectors it ranks as inner product does


def index_types(rows: int) -> list[tuple[str, dict, dict]]:
    """(index type, build params, search params), with the usual rule-of-thumb sizes for `rows`."""
    nlist = max(16, min(4096, int(4 * math.sqrt(rows))))
    nprobe = max(8, nlist // 64)
    return [
        ("FLAT", {}, {}),
        ("IVF_FLAT", {"nlist": nlist}, {"nprobe": nprobe}),
        ("IVF_SQ8", {"nlist": nlist}, {"nprobe": nprobe}),
        ("HNSW", {"M": 16, "efConstruction": 200}, {"ef": 64}),
        ("HNSW_SQ", {"M": 16, "efConstruction": 200, "sq_type": "SQ8"}, {"ef": 64}),
        ("IVF_PQ", {"nlist": nlist, "m": 48, "nbits": 8}, {"nprobe": nprobe}),
        ("SCANN", {"nlist": nlist, "with_raw_data": True}, {"nprobe": nprobe, "reorder_k": 64}),
        ("DISKANN", {}, {"search_list": 64}),
    ]


def clustered_unit_vectors(rng: np.random.Generator, centres: np.ndarray, spreads: np.ndarray, n: int) -> np.ndarray:
    """`n` unit vectors, each a centre plus Gaussian noise of that cluster's spread, in float32."""
    out = np.empty((n, centres.shape[1]), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        which = rng.integers(len(centres), size=stop - start)
        noise = rng.standard_normal((stop - start, centres.shape[1]), dtype=np.float32)
        block = centres[which] + noise * spreads[which, None]
        out[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def synthetic_data(rows: int, queries: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    clusters = max(10, rows // 1000)
    centres = rng.standard_normal((clusters, DIM), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    # Noise of norm 0.6-1.2 around a unit centre: cosine to the centre between ~0.85 and ~0.65.
    spreads = rng.uniform(0.6, 1.2, size=clusters).astype(np.float32) / math.sqrt(DIM)
    return clustered_unit_vectors(rng, centres, spreads, rows), clustered_unit_vectors(rng, centres, spreads, queries)


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int = TOP_K) -> np.ndarray:
    """Ids of the k nearest vectors of each query by inner product (= cosine on unit vectors)."""
    best_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_ids = np.zeros((len(queries), k), dtype=np.int64)
    for start in range(0, len(vectors), 50_000):
        scores = queries @ vectors[start : start + 50_000].T
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        merged_scores = np.concatenate([best_scores, np.take_along_axis(scores, part, axis=1)], axis=1)
        merged_ids = np.concatenate([best_ids, part + start], axis=1)
        keep = np.argpartition(-merged_scores, k - 1, axis=1)[:, :k]
        best_scores = np.take_along_axis(merged_scores, keep, axis=1)
        best_ids = np.take_along_axis(merged_ids, keep, axis=1)
    return best_ids


def create_collection(client: MilvusClient) -> None:
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
    client.create_collection(COLLECTION, schema=schema)


def insert_all(client: MilvusClient, vectors: np.ndarray) -> None:
    for start in range(0, len(vectors), INSERT_BATCH):
        block = vectors[start : start + INSERT_BATCH]
        client.insert(COLLECTION, [{"id": start + i, "vector": row} for i, row in enumerate(block)])
    client.flush(COLLECTION)


def wait_built(client: MilvusClient, rows: int, timeout_s: float = 7200) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = client.describe_index(COLLECTION, "vector")
        if info.get("state") == "Finished" or int(info.get("indexed_rows", 0)) >= rows:
            return
        if info.get("state") == "Failed":
            raise RuntimeError(f"index build failed: {info.get('index_state_fail_reason')}")
        time.sleep(0.5)
    raise TimeoutError("index build did not finish")


def measure_index(
    client: MilvusClient, rows: int, queries: np.ndarray, truth: np.ndarray, index_type: str, build: dict, search: dict
) -> dict:
    client.release_collection(COLLECTION)
    for name in client.list_indexes(COLLECTION):
        client.drop_index(COLLECTION, name)
    params = client.prepare_index_params()
    params.add_index("vector", index_type=index_type, metric_type=METRIC, params=build)
    started = time.perf_counter()
    client.create_index(COLLECTION, params)
    wait_built(client, rows)
    build_s = time.perf_counter() - started
    _, load_ms = timed_ms(client.load_collection, COLLECTION)
    latencies, found = [], []
    search_params = {"metric_type": METRIC, "params": search}
    if index_type == "FLAT":
        queries, truth = queries[:FLAT_QUERIES], truth[:FLAT_QUERIES]
    for query in queries:
        result, ms = timed_ms(
            client.search,
            COLLECTION,
            data=[query.tolist()],
            anns_field="vector",
            limit=TOP_K,
            search_params=search_params,
        )
        latencies.append(ms)
        found.append([hit["id"] for hit in result[0]])
    recall = np.mean([len(set(f) & set(t.tolist())) / TOP_K for f, t in zip(found, truth, strict=True)])
    return {
        "build_s": build_s,
        "load_s": load_ms / 1000,
        "latency": percentiles(latencies),
        "queries": len(queries),
        "qps": 1000 / np.mean(latencies),
        "recall": float(recall),
    }


def main() -> None:
    rows = env_int("RAGYARD_BENCH_ANN_ROWS", 1_000_000)
    count = env_int("RAGYARD_BENCH_ANN_QUERIES", 1000)
    wanted = {t.strip().upper() for t in os.environ.get("RAGYARD_BENCH_ANN_TYPES", "").split(",") if t.strip()}
    load_before = load()
    vectors, queries = synthetic_data(rows, count)
    truth, exact_ms = timed_ms(exact_top_k, vectors, queries)
    results: dict[str, dict | str] = {}
    with tempfile.TemporaryDirectory(prefix="ragyard-bench-ann-") as tmp:
        settings = Settings(home=Path(tmp) / "home", milvus=MilvusSettings(uri=f"http://127.0.0.1:{free_port()}"))
        with Supervisor(settings.logs_dir) as supervisor:
            supervisor.start_all([milvus_spec(settings)])
            client = col.connect(settings.milvus.uri, timeout_s=3600)
            create_collection(client)
            _, insert_ms = timed_ms(insert_all, client, vectors)
            for index_type, build, search in index_types(rows):
                if wanted and index_type not in wanted:
                    continue
                try:
                    measured = measure_index(client, rows, queries, truth, index_type, build, search)
                    results[index_type] = {**measured, "params": (build, search)}
                except Exception as exc:  # noqa: BLE001 - a type milvus-lite does not take is a finding, not a failure
                    results[index_type] = f"refused: {str(exc).splitlines()[0][:200]}"
                print(index_type, results[index_type], flush=True)
    load_after = load()

    lines = []
    for index_type, r in results.items():
        if isinstance(r, str):
            lines.append(f"| {index_type} | | | | | | {r} |")
            continue
        build, search = r["params"]
        lines.append(
            f"| {index_type} | {r['build_s']:.1f} | {r['load_s']:.1f} | {r['qps']:.1f} "
            f"| {r['latency']['p50']:.1f} / {r['latency']['p99']:.1f} | **{r['recall']:.3f}** "
            f"| build {build or '{}'}, search {search or '{}'}; {r['queries']} queries |"
        )
    table = "\n".join(lines)
    body = f"""
{rows:,} synthetic vectors, dim {DIM}, unit length, around {max(10, rows // 1000):,} cluster centres with
per-cluster spread (cosine to the centre ~0.65-0.85); {count} queries drawn from the same clusters;
metric {METRIC}; one milvus-lite server on loopback, one query at a time, top {TOP_K}. Ground truth:
exact top-{TOP_K} by numpy brute force ({exact_ms / 1000:.1f} s for all queries).
Insert ({INSERT_BATCH:,} rows per call, then flush): {insert_ms / 1000:.1f} s, {rows / (insert_ms / 1000):,.0f} rows/s.
Load average (1/5/15 min) before: {load_before}; after: {load_after} (2 cores, shared machine).

| index | build s | load s | QPS (1 client) | p50 / p99 ms | **recall@{TOP_K}** | parameters / outcome |
| --- | ---: | ---: | ---: | ---: | ---: | --- |
{table}
"""
    write_section(f"Retriever: ANN index on {rows:,} synthetic vectors", body)
    print(body)
