"""Embedding backends eval: may a faster backend replace torch, and which one is the default?

For each backend (torch first: the baseline) the configured sources are indexed into a collection of
its own, on the configured Milvus, by the ingestion itself (in this process, with a scratch ledger;
the backend's export is built once under RAGYARD_HOME/models). The retrieval questions are then
searched in dense and hybrid modes with query vectors from the same backend.

The questions are split once, by a fixed seed, into a tuning half and a held-out half. The default
is chosen on the tuning half: the fastest backend (chunks per CPU-second of its ingestion) whose
nDCG@10 is within `QUALITY_MARGIN` of torch's in both modes. The held-out half is reported for every
backend with torch beside it. Two more measurements decide whether a backend change must re-index:
every chunk vector's cosine to torch's, and torch's index searched with each backend's query vectors
(the share of torch's own dense top-10 it finds).
`--quick`: only the documents the quick questions' gold entries name, and those questions.
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from pathlib import Path

import numpy as np
from pymilvus import MilvusClient

from bentos.retriever.search import Searcher
from evals.eval_index import own_index_settings
from evals.harness_types import EvalReport, EvalRun
from evals.retrieval import DEFAULT_DATASET, Question, load_dataset, quick_subset, score_modes
from pipelines.materialize import asset_metadata, materialize_ingest
from ragyard import collection as col
from ragyard.embedding import BACKENDS, EmbeddingModel
from ragyard.settings import Settings, SourceSettings

EXPERIMENT = "ragyard-embedding-backends"
SPLIT_SEED = 17
QUALITY_MARGIN = 0.01  # nDCG@10 a backend may lose against torch on the tuning half
MODES = ("dense", "hybrid")


def split_halves(questions: list[Question], seed: int = SPLIT_SEED) -> tuple[list[Question], list[Question]]:
    """(tuning, held-out): a fixed shuffle of the questions, cut in two."""
    shuffled = sorted(questions, key=lambda q: q.id)
    random.Random(seed).shuffle(shuffled)
    half = len(shuffled) // 2
    return shuffled[:half], shuffled[half:]


def _quick_sources(settings: Settings, questions: list[Question]) -> list[SourceSettings]:
    """The configured sources narrowed to the files the questions' gold entries name."""
    wanted: dict[str, set[str]] = {}
    for question in questions:
        for gold in question.gold:
            source, _, path = gold.doc_id.partition(":")
            wanted.setdefault(source, set()).add(Path(path).name)
    return [
        s.model_copy(update={"include": sorted(wanted[s.name])}) for s in settings.ingest.sources if s.name in wanted
    ]


def _index(settings: Settings) -> dict:
    """Index the sources with the settings' backend; the chunk vectors by id, and what it cost."""
    cpu, wall = time.process_time(), time.perf_counter()
    result = materialize_ingest(settings)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    chunked, vectors = result.output_for_node("embeddings")
    meta = asset_metadata(result, "embeddings")
    return {
        "vectors": dict(zip([c.chunk_id for c in chunked.chunks], vectors, strict=True)),
        "chunks": len(chunked.chunks),
        "embed_seconds": meta["embed_seconds"],
        "ingest_seconds": wall,
        "ingest_cpu_seconds": cpu,
    }


def _scores(settings: Settings, model: EmbeddingModel, questions: list[Question]) -> dict[str, float]:
    report = score_modes(questions, Searcher.from_settings(settings), model, MODES)
    return {f"{r.mode}_ndcg_at_10": r.metrics["ndcg_at_10"] for r in report.results}


def _top10(settings: Settings, model: EmbeddingModel, questions: list[Question]) -> list[list[str]]:
    searcher = Searcher.from_settings(settings)
    vectors = model.encode([q.question for q in questions])
    return [
        [h["chunk_id"] for h in searcher.search("dense", q.question, v.tolist(), 10, "")]
        for q, v in zip(questions, vectors, strict=True)
    ]


def evaluate(settings: Settings, quick: bool = False, backends: tuple[str, ...] = BACKENDS) -> EvalReport:
    """Index and score every backend; the harness contract (evals/harness_types.py)."""
    if backends[0] != "torch":
        raise ValueError("the first backend must be torch: it is the baseline")
    questions = load_dataset(Path(settings.evals.retrieval_dataset or DEFAULT_DATASET))
    if quick:
        questions = quick_subset(questions)
    tuning, held_out = split_halves(questions)
    sources = _quick_sources(settings, questions) if quick else settings.ingest.sources
    results: dict[str, dict] = {}
    client: MilvusClient | None = None
    with tempfile.TemporaryDirectory(prefix="ragyard-eval-backends-") as scratch:
        try:
            for backend in backends:
                collection = f"{settings.milvus.collection}_backend_{backend.replace('-', '_')}"
                configured = own_index_settings(settings, Path(scratch) / backend, collection, sources, backend)
                client = client or col.connect(
                    configured.milvus.uri, configured.milvus.token, configured.milvus.timeout_s
                )
                if client.has_collection(configured.milvus.collection):
                    client.drop_collection(configured.milvus.collection)  # a run cut short left it
                indexed = _index(configured)
                model = EmbeddingModel.from_settings(configured)
                results[backend] = {
                    **indexed,
                    "settings": configured,
                    "model": model,
                    "precision": model.precision,
                    "tuning": _scores(configured, model, tuning),
                    "held_out": _scores(configured, model, held_out),
                }
            _compare_with_torch(results, questions)
        finally:
            for backend in results:
                if client is not None:
                    client.drop_collection(results[backend]["settings"].milvus.collection)
    default = choose_default(
        {b: r["tuning"] for b, r in results.items()},
        {b: r["chunks"] / r["ingest_cpu_seconds"] for b, r in results.items()},
    )
    return _report(results, default, len(tuning), len(held_out), quick)


def _compare_with_torch(results: dict[str, dict], questions: list[Question]) -> None:
    """Per backend: its chunk vectors' cosine to torch's, and torch's index searched with its query vectors."""
    torch = results["torch"]
    torch_top = _top10(torch["settings"], torch["model"], questions)
    for result in results.values():
        ids = sorted(torch["vectors"])
        ours = np.stack([result["vectors"][i] for i in ids])
        theirs = np.stack([torch["vectors"][i] for i in ids])
        cosines = (ours * theirs).sum(axis=1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1))
        result["cosine_min"], result["cosine_mean"] = float(cosines.min()), float(cosines.mean())
        top = _top10(torch["settings"], result["model"], questions)
        result["top10_overlap_on_torch_index"] = float(
            np.mean([len(set(a) & set(b)) / max(len(b), 1) for a, b in zip(top, torch_top, strict=True)])
        )


def choose_default(tuning: dict[str, dict[str, float]], speed: dict[str, float]) -> str:
    """The fastest backend whose tuning-half nDCG@10 is within the margin of torch's in every mode."""
    base = tuning["torch"]
    holds = [b for b, scores in tuning.items() if all(scores[key] >= base[key] - QUALITY_MARGIN for key in base)]
    return max(holds, key=lambda b: speed[b])


def _report(results: dict[str, dict], default: str, n_tuning: int, n_held_out: int, quick: bool) -> EvalReport:
    runs, rows = [], []
    torch = results["torch"]
    for backend, r in results.items():
        rate, cpu_rate = r["chunks"] / r["embed_seconds"], r["chunks"] / r["ingest_cpu_seconds"]
        metrics = {
            **{f"tuning_{k}": v for k, v in r["tuning"].items()},
            **{f"held_out_{k}": v for k, v in r["held_out"].items()},
            "embed_chunks_per_second": rate,
            "ingest_chunks_per_cpu_second": cpu_rate,
            "cosine_to_torch_min": r["cosine_min"],
            "cosine_to_torch_mean": r["cosine_mean"],
            "top10_overlap_on_torch_index": r["top10_overlap_on_torch_index"],
        }
        runs.append(
            EvalRun(
                name=f"backend-{backend}",
                metrics=metrics,
                params={
                    "backend": backend,
                    "precision": r["precision"],
                    "chunks": r["chunks"],
                    "split_seed": SPLIT_SEED,
                    "tuning_questions": n_tuning,
                    "held_out_questions": n_held_out,
                    "chosen_default": backend == default,
                },
            )
        )
        held, base = r["held_out"], torch["held_out"]
        rows.append(
            f"| {'**' + backend + '**' if backend == default else backend} | {r['precision']} "
            f"| {r['tuning']['dense_ndcg_at_10']:.3f} / {r['tuning']['hybrid_ndcg_at_10']:.3f} "
            f"| {held['dense_ndcg_at_10']:.3f} / {held['hybrid_ndcg_at_10']:.3f} "
            f"| {held['dense_ndcg_at_10'] - base['dense_ndcg_at_10']:+.3f} / "
            f"{held['hybrid_ndcg_at_10'] - base['hybrid_ndcg_at_10']:+.3f} "
            f"| {rate:.1f} | {cpu_rate:.1f} | {r['cosine_min']:.5f} / {r['cosine_mean']:.6f} "
            f"| {r['top10_overlap_on_torch_index']:.1%} |"
        )
    chunks = torch["chunks"]
    summary = "\n".join(
        [
            f"{'Quick: the documents the quick questions name' if quick else 'The configured sources'} "
            f"({chunks:,} chunks), indexed once per backend by the ingestion in one process "
            f"({os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end). Questions split by seed "
            f"{SPLIT_SEED}: {n_tuning} tuning, {n_held_out} held out. Default: the fastest backend (chunks per "
            f"CPU-second of the ingestion) within {QUALITY_MARGIN} nDCG@10 of torch on the tuning half, dense and "
            f"hybrid: **{default}**.",
            "",
            "| backend | precision | tuning nDCG@10 dense / hybrid | held-out nDCG@10 dense / hybrid "
            "| held-out vs torch | embed chunks/s | ingest chunks per CPU-s | chunk cosine to torch min / mean "
            "| dense top-10 on torch's index, shared with torch's queries |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            *rows,
        ]
    )
    return EvalReport(EXPERIMENT, runs, summary)
