"""Retriever benchmark: `POST /search` against the same searches made with pymilvus directly.

`ragyard bench retriever` serves a copy of an existing index (the original is never
served): RAGYARD_BENCH_INDEX names a RAGYARD_HOME that holds one (its `milvus/` data dir). Without
it, the index that the ingest benchmark kept in $RAGYARD_BENCH_KEEP/home is used (`python -m
benchmarks ingest retriever` sets that to a temporary folder when nothing is named). The collection is
RAGYARD_BENCH_COLLECTION, else the only one in the index.

Milvus-lite, the embedder bento and the retriever bento run on loopback; the direct side uses the
retriever's own `Searcher` (the pymilvus calls the bento makes) in this process. Queries are the
retrieval eval's questions, one at a time, top_k 10; the two sides take turns on each question.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.measure import env_int, fmt, free_port, load, percentiles, questions, timed_ms  # noqa: E402
from bentos.retriever.search import Searcher  # noqa: E402
from ragyard import collection as col  # noqa: E402
from ragyard.docs_report import write_section  # noqa: E402
from ragyard.embedding import EmbeddingModel  # noqa: E402
from ragyard.services import embedder_spec, milvus_spec, retriever_spec  # noqa: E402
from ragyard.settings import EmbedderSettings, MilvusSettings, RetrieverSettings, Settings  # noqa: E402
from ragyard.supervisor import Supervisor  # noqa: E402

TOP_K = 10
MODES = ("dense", "bm25", "hybrid")


class NoIndex(RuntimeError):
    """No built index to benchmark; the message says how to get one."""


def index_home() -> Path:
    if os.environ.get("RAGYARD_BENCH_INDEX"):
        home = Path(os.environ["RAGYARD_BENCH_INDEX"])
    elif os.environ.get("RAGYARD_BENCH_KEEP"):
        home = Path(os.environ["RAGYARD_BENCH_KEEP"]) / "home"
    else:
        raise NoIndex(
            "set RAGYARD_BENCH_INDEX to a RAGYARD_HOME that holds an index (its milvus/ folder), "
            "or build one first: ragyard bench ingest retriever"
        )
    if not (home / "milvus").is_dir():
        raise NoIndex(f"{home} holds no index: {home / 'milvus'} is missing")
    return home


def pick_collection(uri: str) -> str:
    names = col.connect(uri).list_collections()
    wanted = os.environ.get("RAGYARD_BENCH_COLLECTION")
    if wanted:
        if wanted not in names:
            raise NoIndex(f"collection {wanted!r} is not in the index; it has {names}")
        return wanted
    if len(names) != 1:
        raise NoIndex(f"the index has collections {names}: choose one with RAGYARD_BENCH_COLLECTION")
    return names[0]


def post_search(client: httpx.Client, query: str, mode: str) -> tuple[dict, float]:
    response, ms = timed_ms(client.post, "/search", json={"query": query, "mode": mode, "top_k": TOP_K})
    if response.status_code != 200:
        raise RuntimeError(f"POST /search answered {response.status_code}: {response.text[:300]}")
    return response.json(), ms


def embed_then_search(embedder: httpx.Client, searcher: Searcher, query: str, mode: str) -> list[dict]:
    """What the bento does for one query, made from here: the embedder over HTTP, then pymilvus."""
    vector = None
    if mode != "bm25":
        response = embedder.post("/embed", json={"texts": [query]})
        response.raise_for_status()
        vector = response.json()["embeddings"][0]
    return searcher.search(mode, query, vector, TOP_K, "")


def cold_hybrid(queries, model, searcher, retriever) -> dict:
    """The full text query with an uncached embedding: in-process encode + pymilvus vs the bento."""
    raw, bento = [], []
    for query in queries:
        raw.append(timed_ms(lambda q=query: searcher.hybrid(model.encode([q])[0].tolist(), q, TOP_K, ""))[1])
        bento.append(post_search(retriever, query, "hybrid")[1])
    return {"raw": percentiles(raw), "bento": percentiles(bento)}


def warm_mode(mode, queries, vectors, searcher, embedder, retriever) -> dict:
    """One mode with the embedder's cache warm: pymilvus alone, embedder + pymilvus, and the bento."""
    direct, composite, bento, inside, same = [], [], [], [], 0
    for query, vector in zip(queries, vectors, strict=True):
        hits, ms = timed_ms(searcher.search, mode, query, vector if mode != "bm25" else None, TOP_K, "")
        direct.append(ms)
        composite.append(timed_ms(embed_then_search, embedder, searcher, query, mode)[1])
        answer, ms = post_search(retriever, query, mode)
        bento.append(ms)
        inside.append(answer["timings"]["search_ms"])
        same += [h["chunk_id"] for h in answer["hits"]] == [h["chunk_id"] for h in hits]
    result: dict[str, Any] = {
        "direct": percentiles(direct),
        "composite": percentiles(composite),
        "bento": percentiles(bento),
        "inside": percentiles(inside),
        "same": same,
    }
    result["added_p50"] = result["bento"]["p50"] - result["composite"]["p50"]
    # Per question, bento minus baseline: the questions' own spread in search cost cancels out.
    result["added_paired"] = float(np.median(np.subtract(bento, composite)))
    return result


def main() -> None:
    source = index_home()
    queries = questions()[: env_int("RAGYARD_BENCH_QUERIES", 10_000)]
    load_before = load()
    with tempfile.TemporaryDirectory(prefix="ragyard-bench-retriever-") as tmp:
        settings = Settings(
            home=Path(tmp) / "home",
            milvus=MilvusSettings(uri=f"http://127.0.0.1:{free_port()}"),
            embedder=EmbedderSettings(port=free_port()),
            retriever=RetrieverSettings(port=free_port()),
        )
        shutil.copytree(source / "milvus", settings.milvus_data_dir)
        with Supervisor(settings.logs_dir) as supervisor:
            supervisor.start_all([milvus_spec(settings)])
            settings.milvus.collection = pick_collection(settings.milvus.uri)
            supervisor.start_all([embedder_spec(settings), retriever_spec(settings)])
            searcher = Searcher.from_settings(settings)
            rows = col.row_count(searcher.ensure_loaded(), settings.milvus.collection)
            embedder = httpx.Client(base_url=settings.embedder.url, timeout=60)
            retriever = httpx.Client(base_url=settings.retriever.url, timeout=60)
            post_search(retriever, "warm-up query", "hybrid")  # the retriever's first load and connections
            model = EmbeddingModel.from_settings(settings)
            vectors = [v.tolist() for v in model.encode(queries)]
            cold = cold_hybrid(queries, model, searcher, retriever)  # also fills the embedder's cache
            warm = {mode: warm_mode(mode, queries, vectors, searcher, embedder, retriever) for mode in MODES}
            embedder.close()
            retriever.close()
    load_after = load()

    warm_rows = "\n".join(
        f"| {mode} | {fmt(w['direct'])} | {fmt(w['composite'])} | {fmt(w['bento'])} | **{w['added_p50']:+.1f}** "
        f"| {w['added_paired']:+.1f} | {fmt(w['inside'])} | {w['same']}/{len(queries)} |"
        for mode, w in warm.items()
    )
    body = f"""
Index: a copy of `{source}` (collection `{settings.milvus.collection}`, {rows} chunks, HNSW
M=16 for dense, BM25 sparse index), milvus-lite server, embedder and retriever bentos on loopback.
{len(queries)} questions of the retrieval eval, one request at a time, top_k {TOP_K}.
Load average (1/5/15 min) before: {load_before}; after: {load_after} (2 cores, shared machine).

"The same work" for the bento and for pymilvus: the retriever embeds the query through the
embedder bento, then makes one pymilvus call. So the baseline is that same sequence made by the
benchmark itself, `POST /embed` to the same embedder, then the retriever's own `Searcher` (the
same pymilvus call), and **added** is the bento's p50 minus that baseline's p50: the retriever's
own hop, validation and serialization. The embedder's cache is warm for these rows on both sides
(every question was embedded once before), so the embedding costs both sides a cache hit; for
bm25 no embedding is involved and the baseline is pymilvus alone. "pymilvus alone" searches with a
vector computed in advance; "in the bento" is the `search_ms` the bento reports for its pymilvus call.
On a loaded machine the difference of two p50s moves by several ms from run to run; the median of
the per-question differences (the two sides run back to back on each question) is the steadier figure.

| mode | pymilvus alone p50 / p99 ms | embed + pymilvus p50 / p99 ms | `POST /search` p50 / p99 ms | **added at p50, ms** (target ≤ 5) | median of per-question differences, ms | pymilvus in the bento p50 / p99 ms | same top-10 |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
{warm_rows}

The full text query with an uncached embedding (hybrid, each question's first time): raw
in-process `encode` + pymilvus {fmt(cold["raw"])} ms (p50 / p99); `POST /search`
{fmt(cold["bento"])} ms, which includes the embedder bento's HTTP hop and its model call.
"""
    write_section("Retriever", body)
    print(body)
