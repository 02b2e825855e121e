"""Retrieval eval: a question set with gold sections, searched in every mode, scored.

A hit is relevant to a gold entry when its `doc_id` equals the entry's `doc_id` and its `section`
breadcrumb contains the entry's `section` substring. Searches run in-process with the retriever's
own `Searcher` (the same Milvus queries the retriever bento makes) and query vectors from the
embedder's `EmbeddingModel`. `evaluate` is the harness contract (evals/harness_types.py): the
harness logs one MLflow run per mode.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bentos.retriever.search import Searcher
from evals.harness_types import EvalReport, EvalRun
from evals.metrics import mean, ndcg_at_k, recall_at_k, reciprocal_rank_at_k
from ragyard.embedding import EmbeddingModel
from ragyard.settings import Settings

DATASETS_DIR = Path(__file__).resolve().parent / "datasets"
DEFAULT_DATASET = DATASETS_DIR / "python_docs_retrieval.jsonl"
EXPERIMENT = "ragyard-retrieval"
MODES = ("dense", "bm25", "hybrid")
TOP_K = 10  # the deepest cut-off any metric needs
METRIC_NAMES = ("recall_at_5", "recall_at_10", "mrr_at_10", "ndcg_at_10")
QUICK_EVERY = 4


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


def score_modes(
    questions: list[Question],
    searcher: Searcher,
    model: EmbeddingModel | None,
    modes: tuple[str, ...] = MODES,
    top_k: int = TOP_K,
    dataset_name: str = "",
) -> RetrievalReport:
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
        per_question: list[dict[str, Any]] = []
        for question, vector in zip(questions, vectors, strict=True):
            hits = searcher.search(mode, question.question, vector, top_k, "")
            scores = score_question(hits, question.gold)
            per_question.append(
                {
                    "id": question.id,
                    **scores,
                    "hits": [{"doc_id": h["doc_id"], "section": h["section"], "score": h["score"]} for h in hits[:10]],
                }
            )
        metrics = {name: mean([row[name] for row in per_question]) for name in METRIC_NAMES}
        results.append(ModeResult(mode, metrics, per_question, time.perf_counter() - started))
    return RetrievalReport(dataset_name, len(questions), top_k, results)


def markdown_table(report: RetrievalReport) -> str:
    lines = [
        f"Dataset `{report.dataset_name}` ({report.dataset_size} questions), top_k {report.top_k}; "
        "a hit is relevant when its document and section match a gold entry.",
        "",
        "| mode | recall@5 | recall@10 | MRR@10 | nDCG@10 | search s |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for result in report.results:
        m = result.metrics
        lines.append(
            f"| {result.mode} | {m['recall_at_5']:.3f} | {m['recall_at_10']:.3f} | {m['mrr_at_10']:.3f} "
            f"| {m['ndcg_at_10']:.3f} | {result.search_seconds:.1f} |"
        )
    return "\n".join(lines)


def quick_subset(questions: list[Question]) -> list[Question]:
    """Every fourth question: a quarter of the set, spread over every part of the docs it covers."""
    return questions[::QUICK_EVERY]


def to_eval_report(report: RetrievalReport) -> EvalReport:
    """One run per mode: the run params say what was searched, the harness adds the index and settings."""
    runs = [
        EvalRun(
            name=f"{report.dataset_name}-{result.mode}",
            params={
                "mode": result.mode,
                "top_k": report.top_k,
                "dataset": report.dataset_name,
                "dataset_size": report.dataset_size,
            },
            metrics={**result.metrics, "search_seconds": result.search_seconds},
            tables={"per_question": result.per_question},
        )
        for result in report.results
    ]
    return EvalReport(EXPERIMENT, runs, markdown_table(report))


def evaluate(
    settings: Settings,
    quick: bool = False,
    dataset: Path | None = None,
    modes: tuple[str, ...] = MODES,
    model: EmbeddingModel | None = None,
) -> EvalReport:
    """The harness contract: score the collection in `settings` on the dataset (a quarter of it if quick).

    The dataset is `dataset`, else `evals.retrieval_dataset`, else the shipped Python-docs set.
    """
    dataset = Path(dataset or settings.evals.retrieval_dataset or DEFAULT_DATASET)
    questions = load_dataset(dataset)
    dataset_name = dataset.name.split(".")[0]
    if quick:
        questions, dataset_name = quick_subset(questions), f"{dataset_name}-quick"
    if model is None and any(mode != "bm25" for mode in modes):
        model = EmbeddingModel.from_settings(settings)
    report = score_modes(questions, Searcher.from_settings(settings), model, modes, TOP_K, dataset_name)
    return to_eval_report(report)
