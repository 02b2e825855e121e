"""Retrieval eval: a question set with gold sections, searched in every mode, scored, logged to MLflow.

A hit is relevant to a gold entry when its `doc_id` equals the entry's `doc_id` and its `section`
breadcrumb contains the entry's `section` substring. Searches run in-process with the retriever's
own `Searcher` (the same Milvus queries the retriever bento makes) and query vectors from the
embedder's `EmbeddingModel`; nothing goes through HTTP except MLflow.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from bentos.embedder.model import EmbeddingModel
from bentos.retriever.search import Searcher
from evals.metrics import mean, ndcg_at_k, recall_at_k, reciprocal_rank_at_k
from ragyard.settings import Settings

DATASETS_DIR = Path(__file__).resolve().parent / "datasets"
DEFAULT_DATASET = DATASETS_DIR / "python_docs_retrieval.jsonl"
EXPERIMENT = "ragyard-retrieval"
MODES = ("dense", "bm25", "hybrid")
TOP_K = 10  # the deepest cut-off any metric needs
METRIC_NAMES = ("recall_at_5", "recall_at_10", "mrr_at_10", "ndcg_at_10")


class DatasetError(ValueError):
    """The dataset file is malformed; the message names the line."""


@dataclass(frozen=True)
class Gold:
    doc_id: str
    section: str


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    gold: tuple[Gold, ...]


@dataclass
class ModeResult:
    mode: str
    metrics: dict[str, float]
    per_question: list[dict] = field(default_factory=list)
    search_seconds: float = 0.0


@dataclass
class RetrievalReport:
    dataset_name: str
    dataset_size: int
    top_k: int
    results: list[ModeResult]


def load_dataset(path: Path) -> list[Question]:
    questions: list[Question] = []
    ids: set[str] = set()
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            gold = tuple(Gold(str(g["doc_id"]), str(g["section"])) for g in row["gold"])
            question = Question(str(row["id"]), str(row["question"]), gold)
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DatasetError(f"{path}:{number}: not a question object ({exc})") from exc
        if not question.question.strip() or not gold or any(not g.doc_id or not g.section for g in gold):
            raise DatasetError(f"{path}:{number}: empty question, or a gold entry without doc_id or section")
        if question.id in ids:
            raise DatasetError(f"{path}:{number}: duplicate id {question.id!r}")
        ids.add(question.id)
        questions.append(question)
    if not questions:
        raise DatasetError(f"{path}: no questions")
    return questions


def gold_match(hit: dict, gold: tuple[Gold, ...]) -> int | None:
    """Index of the first gold entry this hit satisfies, or None."""
    for index, entry in enumerate(gold):
        if hit.get("doc_id") == entry.doc_id and entry.section in (hit.get("section") or ""):
            return index
    return None


def score_question(hits: list[dict], gold: tuple[Gold, ...]) -> dict[str, float]:
    ranked = [gold_match(hit, gold) for hit in hits]
    n = len(gold)
    return {
        "recall_at_5": recall_at_k(ranked, n, 5),
        "recall_at_10": recall_at_k(ranked, n, 10),
        "mrr_at_10": reciprocal_rank_at_k(ranked, 10),
        "ndcg_at_10": ndcg_at_k(ranked, n, 10),
    }


def evaluate(questions: list[Question], searcher: Searcher, model: EmbeddingModel | None,
             modes: tuple[str, ...] = MODES, top_k: int = TOP_K, dataset_name: str = "") -> RetrievalReport:
    """Search every question in every mode and average the per-question metrics."""
    if top_k < 10:
        raise ValueError("top_k must be at least 10: the metrics cut off at 10")
    unknown = set(modes) - set(MODES)
    if unknown:
        raise ValueError(f"unknown modes {sorted(unknown)}; expected some of {MODES}")
    searcher.ensure_loaded()  # CollectionUnavailable names what is missing before any work
    vectors: list[list[float] | None] = [None] * len(questions)
    if any(mode in ("dense", "hybrid") for mode in modes):
        if model is None:
            raise ValueError("dense and hybrid modes need an embedding model")
        vectors = [v.tolist() for v in model.encode([q.question for q in questions])]
    results = []
    for mode in modes:
        started = time.perf_counter()
        per_question = []
        for question, vector in zip(questions, vectors):
            hits = searcher.search(mode, question.question, vector, top_k, "")
            scores = score_question(hits, question.gold)
            per_question.append({
                "id": question.id,
                **scores,
                "hits": [{"doc_id": h["doc_id"], "section": h["section"], "score": h["score"]} for h in hits[:10]],
            })
        metrics = {name: mean([row[name] for row in per_question]) for name in METRIC_NAMES}
        results.append(ModeResult(mode, metrics, per_question, time.perf_counter() - started))
    return RetrievalReport(dataset_name, len(questions), top_k, results)


def markdown_table(report: RetrievalReport) -> str:
    lines = [
        f"Retrieval eval: {report.dataset_name} ({report.dataset_size} questions, top_k={report.top_k})",
        "",
        "| mode | recall@5 | recall@10 | MRR@10 | nDCG@10 | search s |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for result in report.results:
        m = result.metrics
        lines.append(f"| {result.mode} | {m['recall_at_5']:.3f} | {m['recall_at_10']:.3f} | {m['mrr_at_10']:.3f} "
                     f"| {m['ndcg_at_10']:.3f} | {result.search_seconds:.1f} |")
    return "\n".join(lines)


# ---- MLflow ----------------------------------------------------------------------------------


def mlflow_client(tracking_uri: str):
    # Without this, a down server blocks for minutes of retries before the eval fails.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def experiment_id(client, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    return experiment.experiment_id if experiment else client.create_experiment(name)


def run_params(settings: Settings, report: RetrievalReport, mode: str) -> dict[str, str]:
    r, c = settings.retriever, settings.chunker
    return {
        "mode": mode,
        "fusion": r.fusion,
        "rrf_k": str(r.rrf_k),
        "dense_weight": str(r.dense_weight),
        "top_k": str(report.top_k),
        "embedder_model": settings.embedder.model,
        "embedder_dim": str(settings.embedder.dim),
        "chunker_max_chars": str(c.max_chars),
        "chunker_overlap_chars": str(c.overlap_chars),
        "chunker_min_chars": str(c.min_chars),
        "collection": settings.milvus.collection,
        "dataset": report.dataset_name,
        "dataset_size": str(report.dataset_size),
    }


def log_report(client, experiment: str, settings: Settings, report: RetrievalReport) -> list[str]:
    """One MLflow run per mode, tagged with a shared batch id; returns the run ids."""
    from mlflow.entities import Metric, Param

    exp_id = experiment_id(client, experiment)
    batch = uuid.uuid4().hex[:12]
    run_ids = []
    for result in report.results:
        run = client.create_run(exp_id, run_name=f"{report.dataset_name}-{result.mode}",
                                tags={"ragyard.eval": "retrieval", "ragyard.eval_batch": batch})
        run_id = run.info.run_id
        try:
            now = int(time.time() * 1000)
            client.log_batch(
                run_id,
                metrics=[Metric(name, value, now, 0) for name, value in result.metrics.items()]
                + [Metric("search_seconds", result.search_seconds, now, 0)],
                params=[Param(key, value) for key, value in run_params(settings, report, result.mode).items()],
            )
            client.log_dict(run_id, result.per_question, "per_question.json")
        except BaseException:
            client.set_terminated(run_id, status="FAILED")
            raise
        client.set_terminated(run_id, status="FINISHED")
        run_ids.append(run_id)
    return run_ids


def run_retrieval_eval(settings: Settings, dataset: Path = DEFAULT_DATASET, modes: tuple[str, ...] = MODES,
                       experiment: str = EXPERIMENT, log_to_mlflow: bool = True,
                       model: EmbeddingModel | None = None) -> tuple[RetrievalReport, list[str]]:
    """Load the dataset, evaluate against the collection in `settings`, log to MLflow; (report, run ids)."""
    questions = load_dataset(dataset)
    client = None
    if log_to_mlflow:
        client = mlflow_client(settings.mlflow.url)
        experiment_id(client, experiment)  # fail fast, before the searches, if MLflow is down
    if model is None and any(mode != "bm25" for mode in modes):
        e = settings.embedder
        model = EmbeddingModel(e.model, device=e.device, batch_size=e.batch_size)
    dataset_name = Path(dataset).name.split(".")[0]
    report = evaluate(questions, Searcher.from_settings(settings), model, modes, TOP_K, dataset_name)
    run_ids = log_report(client, experiment, settings, report) if client is not None else []
    return report, run_ids
