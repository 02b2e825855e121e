"""Semantic cache eval: how often a similar earlier question answers a new one, and how often wrongly.

The retrieval question set (every question about a different section), then hand-written
paraphrases of 30 of its questions (`python_docs_paraphrases.jsonl`, each with its original's gold),
are replayed in order through the router's own `ResponseCache` (one scope, as for one model and
index version), with question vectors from the configured embedding model (the embedder bento
serves the same vectors). A question that finds an earlier one at or above the similarity
threshold is a hit; the hit is false when the two questions share no gold section, so the cached
answer is about something else. A miss is stored, as the router stores an answer.

Per threshold: hit rate, false-hit rate (false hits / hits), and the reuse ceiling: the share of
questions whose gold section an earlier question already had, the most a perfect cache could hit.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from bentos.embedder.model import EmbeddingModel
from evals.harness_types import EvalReport, EvalRun
from evals.retrieval import DEFAULT_DATASET, Question, load_dataset, quick_subset
from ragyard.settings import Settings
from router.cache import ResponseCache

EXPERIMENT = "ragyard-cache"
PARAPHRASES = DEFAULT_DATASET.with_name("python_docs_paraphrases.jsonl")
SCOPE = "eval"


def thresholds(configured: float) -> list[float]:
    return sorted({0.80, 0.85, 0.90, 0.95, 0.98, configured})


def replay(questions: list[Question], vectors: np.ndarray, threshold: float) -> dict[str, float]:
    """Feed the questions in order through a fresh cache; count hits, false hits and the reuse ceiling."""
    hits = false_hits = reusable = 0
    seen_sections: set[tuple[str, str]] = set()
    with tempfile.TemporaryDirectory(prefix="ragyard-cache-eval-") as tmp:
        cache = ResponseCache(Path(tmp) / "cache.sqlite3", ttl_s=1e9, max_entries=len(questions) + 1,
                              threshold=threshold)
        for question, vector in zip(questions, vectors):
            sections = {(g.doc_id, g.section) for g in question.gold}
            reusable += bool(sections & seen_sections)
            seen_sections |= sections
            hit = cache.semantic(SCOPE, vector)
            if hit is not None:
                hits += 1
                false_hits += not sections & {tuple(s) for s in hit.payload["sections"]}
                continue
            cache.put(question.id, SCOPE, question.question, vector, {"sections": sorted(sections)})
    n = len(questions)
    return {"hit_rate": hits / n, "false_hit_rate": false_hits / hits if hits else 0.0,
            "false_hits_per_question": false_hits / n, "reuse_ceiling": reusable / n, "hits": float(hits)}


def with_paraphrases(questions: list[Question], path: Path = PARAPHRASES) -> list[Question]:
    """The questions, then the paraphrases of those among them, each with its original's gold."""
    by_id = {q.id: q for q in questions}
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return questions + [Question(row["id"], row["question"], by_id[row["of"]].gold)
                        for row in rows if row["of"] in by_id]


def evaluate(settings: Settings, quick: bool = False, model: EmbeddingModel | None = None) -> EvalReport:
    dataset = Path(settings.evals.retrieval_dataset or DEFAULT_DATASET)
    questions = load_dataset(dataset)
    name = dataset.name.split(".")[0]
    if quick:
        questions, name = quick_subset(questions), f"{name}-quick"
    questions = with_paraphrases(questions)
    e = settings.embedder
    model = model or EmbeddingModel(e.model, device=e.device, batch_size=e.batch_size)
    vectors = model.encode([q.question for q in questions], normalize=True)
    configured = settings.router.semantic_threshold
    runs, rows = [], []
    for threshold in thresholds(configured):
        metrics = replay(questions, vectors, threshold)
        runs.append(EvalRun(name=f"semantic-{threshold:.2f}",
                            params={"dataset": name, "questions": len(questions), "threshold": threshold,
                                    "configured": threshold == configured, "embedder_model": e.model},
                            metrics=metrics))
        rows.append(f"| {threshold:.2f}{' (configured)' if threshold == configured else ''} "
                    f"| {metrics['hit_rate']:.3f} | {metrics['false_hit_rate']:.3f} | {metrics['reuse_ceiling']:.3f} |")
    summary = (f"Dataset `{name}` plus paraphrases ({len(questions)} questions, replayed in order through one "
               f"semantic-cache scope); embedder {e.model}. The reuse ceiling is the share a perfect cache would hit. A false hit serves the answer of a question with no gold "
               "section in common.\n\n| threshold | hit rate | false-hit rate (of hits) | reuse ceiling |\n"
               "| --- | ---: | ---: | ---: |\n" + "\n".join(rows))
    return EvalReport(experiment=EXPERIMENT, runs=runs, summary_markdown=summary)
