"""Answer eval: every question of the Python-docs QA set answered by each model, with retrieval, scored.

Per question: the hybrid retriever's top CONTEXT_CHUNKS chunks (in-process: the retriever's own
`Searcher` and the embedder's `EmbeddingModel`, as the retrieval eval does) go into the RAG prompt
from the MLflow prompt registry (the built-in template when MLflow has none), and each model
answers it (evals/generation.py: the LLM bento when it is up, else llama.cpp in-process).
Answers are cached under RAGYARD_HOME, so the router eval and reruns reuse them.

Per model (one EvalRun each): token F1 against the reference answer, an LLM-judge score when
`evals.judge_model` names a capable catalog model (off by default: the small local models are no
judges), groundedness and citation accuracy (evals/answer_metrics.py), latency and cost per answer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

from evals.answer_metrics import SUPPORT_THRESHOLD, citation_score, groundedness, token_f1
from evals.generation import AnswerCache, Generator, generate_cached, generator_for
from evals.harness_types import EvalReport, EvalRun
from evals.retrieval import DATASETS_DIR, DatasetError, Gold, gold_match, load_dataset
from ragyard.settings import Settings
from router.routing.base import RouteRequest
from router.routing.features import routing_features

log = logging.getLogger(__name__)

DEFAULT_DATASET = DATASETS_DIR / "python_docs_qa.jsonl"
EXPERIMENT = "ragyard-answers"
RETRIEVAL_MODE = "hybrid"
CONTEXT_CHUNKS = 3
# Small local models on a shared CPU: every prompt token costs time, so each chunk is cut short.
CHUNK_CHARS = 600
MAX_TOKENS = 96
QUICK_QUESTIONS = 3


@dataclass(frozen=True)
class QAItem:
    id: str
    question: str
    reference: str
    gold: tuple[Gold, ...]


def load_qa_dataset(path: Path = DEFAULT_DATASET) -> list[QAItem]:
    """The QA set: the retrieval dataset's format plus a non-empty `answer` per line."""
    questions = load_dataset(path)
    references = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            row = json.loads(line)
            answer = row.get("answer")
            if not isinstance(answer, str) or not answer.strip():
                raise DatasetError(f"{path}:{number}: no reference `answer`")
            references[str(row["id"])] = answer
    return [QAItem(q.id, q.question, references[q.id], q.gold) for q in questions]


def retrieve_contexts(settings: Settings, questions: list[str], top_k: int = CONTEXT_CHUNKS) -> list[list[dict]]:
    """The hybrid search hits for every question, from the collection in `settings`."""
    from bentos.retriever.search import Searcher
    from ragyard.embedding import EmbeddingModel

    vectors = EmbeddingModel.from_settings(settings).encode(questions)
    searcher = Searcher.from_settings(settings)
    searcher.ensure_loaded()
    return [searcher.search(RETRIEVAL_MODE, q, v.tolist(), top_k, "") for q, v in zip(questions, vectors, strict=True)]


def numbered_context(hits: list[dict]) -> str:
    """The passages as the prompt shows them: `[n] title > section` then the text."""
    return "\n\n".join(
        f"[{n}] {h.get('title') or h.get('doc_id')} > {h.get('section') or ''}\n{h.get('text', '')[:CHUNK_CHARS]}"
        for n, h in enumerate(hits, start=1)
    )


JUDGE_PROMPT = (
    "You grade answers to questions about Python. Compare the answer with the reference answer and "
    "reply with one digit from 1 to 5: 5 means the answer is correct and complete, 3 partly correct, "
    "1 wrong or missing.\n\nQuestion: {question}\nReference answer: {reference}\nAnswer: {answer}\n\nGrade:"
)


def judge_score(generator: Generator, cache: AnswerCache, judge_model: str, item: QAItem, answer: str) -> float | None:
    """The judge's grade mapped to [0, 1]; None when its reply holds no grade."""
    prompt = JUDGE_PROMPT.format(question=item.question, reference=item.reference, answer=answer)
    reply, _ = generate_cached(cache, generator, judge_model, [{"role": "user", "content": prompt}], 4)
    grade = re.search(r"[1-5]", reply.text)
    return (int(grade.group()) - 1) / 4 if grade else None


@dataclass
class AnswerRecord:
    id: str
    model: str
    answer: str
    token_f1: float
    groundedness: float
    citations: int
    valid_citations: int
    correct_citations: int
    seconds: float
    cost: float
    prompt_tokens: int
    completion_tokens: int
    cached: bool
    judge: float | None = None
    features: dict[str, float] = field(default_factory=dict)


@dataclass
class AnswerSet:
    """Everything the answers eval produced; the router eval trains and routes on it."""

    items: list[QAItem]
    contexts: list[list[dict]]
    models: list[str]
    records: list[AnswerRecord]  # one per (item, model)
    prompt_name: str
    prompt_version: str
    backend: str
    dataset: str

    def record(self, item_id: str, model: str) -> AnswerRecord:
        return next(r for r in self.records if r.id == item_id and r.model == model)


def sample_order(items: list[QAItem]) -> list[QAItem]:
    """A fixed pseudo-random order (by a hash of the id), so that the first n spread over all topics."""
    return sorted(items, key=lambda item: hashlib.sha256(item.id.encode()).hexdigest())


def collect_answers(
    settings: Settings,
    quick: bool = False,
    dataset: Path = DEFAULT_DATASET,
    models: list[str] | None = None,
    generator: Generator | None = None,
    limit: int | None = None,
    cached_only: bool = False,
) -> AnswerSet:
    """Answer the questions (the first `limit` of `sample_order`) with every model.

    `cached_only`: generate nothing; keep the questions every model has a cached answer for
    (how the router eval reuses a long answer run that was stopped part-way).
    """
    from router.prompts import PromptResolver

    items = load_qa_dataset(dataset)
    models = list(models or settings.evals.answer_models)
    if quick:
        items, models = items[:QUICK_QUESTIONS], models[:1]
    elif limit:
        items = sample_order(items)[:limit]
    prompt = PromptResolver.from_settings(settings).resolve()
    generator = generator or generator_for(settings)
    cache = AnswerCache.for_settings(settings)
    contexts = retrieve_contexts(settings, [item.question for item in items])
    messages_of = [
        prompt.render(context=numbered_context(hits), question=item.question)
        for item, hits in zip(items, contexts, strict=True)
    ]
    if cached_only:
        keep = [
            i
            for i, messages in enumerate(messages_of)
            if all(cache.get(model, messages, MAX_TOKENS) for model in models)
        ]
        items, contexts = [items[i] for i in keep], [contexts[i] for i in keep]
        messages_of = [messages_of[i] for i in keep]
    records = []
    # Question-major, so that an interrupted run leaves whole questions in the cache.
    for item, hits, messages in zip(items, contexts, messages_of, strict=True):
        for model in models:
            generation, cached = generate_cached(cache, generator, model, messages, MAX_TOKENS)
            chunks = [h.get("text", "") for h in hits]
            cites = citation_score(
                generation.text, len(hits), [gold_match(h, item.gold) is not None for h in hits].__getitem__
            )
            # the user's turn as the router sees it, before the prompt template wraps it
            request = RouteRequest(
                item.question, ({"role": "user", "content": item.question},), tuple(hits), MAX_TOKENS
            )
            records.append(
                AnswerRecord(
                    id=item.id,
                    model=model,
                    answer=generation.text,
                    token_f1=token_f1(generation.text, item.reference),
                    groundedness=groundedness(generation.text, chunks),
                    citations=cites.cited,
                    valid_citations=cites.valid,
                    correct_citations=cites.correct,
                    seconds=generation.seconds,
                    cost=generation.cost,
                    prompt_tokens=generation.prompt_tokens,
                    completion_tokens=generation.completion_tokens,
                    cached=cached,
                    judge=(
                        judge_score(generator, cache, settings.evals.judge_model, item, generation.text)
                        if settings.evals.judge_model
                        else None
                    ),
                    features=routing_features(request),
                )
            )
            log.info(
                "%s %s: %.1f s%s, F1 %.2f",
                item.id,
                model,
                generation.seconds,
                " (cached)" if cached else "",
                records[-1].token_f1,
            )
    return AnswerSet(
        items,
        contexts,
        models,
        records,
        prompt.name,
        str(prompt.version or prompt.alias),
        generator.backend,
        Path(dataset).name.split(".")[0],
    )


def model_metrics(records: list[AnswerRecord]) -> dict[str, float]:
    cited = sum(r.citations for r in records)
    seconds = [r.seconds for r in records]
    metrics = {
        "token_f1": statistics.fmean(r.token_f1 for r in records),
        "groundedness": statistics.fmean(r.groundedness for r in records),
        # micro-averaged over all citations; answers citing nothing count in cited_share only
        "citation_accuracy": sum(r.correct_citations for r in records) / cited if cited else 0.0,
        "citation_valid_share": sum(r.valid_citations for r in records) / cited if cited else 0.0,
        "cited_share": sum(r.citations > 0 for r in records) / len(records),
        "latency_mean_s": statistics.fmean(seconds),
        "latency_p50_s": statistics.median(seconds),
        "cost_per_answer": statistics.fmean(r.cost for r in records),
        "completion_tokens_mean": statistics.fmean(r.completion_tokens for r in records),
    }
    judged = [r.judge for r in records if r.judge is not None]
    if judged:
        metrics["judge_score"] = statistics.fmean(judged)
    return metrics


def report(answers: AnswerSet, settings: Settings) -> EvalReport:
    runs, lines = (
        [],
        [
            f"Answer eval: {answers.dataset} ({len(answers.items)} questions, {RETRIEVAL_MODE} retrieval, "
            f"top {CONTEXT_CHUNKS} chunks, prompt {answers.prompt_name}@{answers.prompt_version}, {answers.backend})",
            "",
            "| model | token F1 | groundedness | citation acc. | cited | latency p50 s | cost/answer |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ],
    )
    for model in answers.models:
        records = [r for r in answers.records if r.model == model]
        metrics = model_metrics(records)
        runs.append(
            EvalRun(
                name=f"{answers.dataset}-{model}",
                params={
                    "model": model,
                    "prompt_name": answers.prompt_name,
                    "prompt_version": answers.prompt_version,
                    "retriever_mode": RETRIEVAL_MODE,
                    "context_chunks": CONTEXT_CHUNKS,
                    "max_tokens": MAX_TOKENS,
                    "generation_backend": answers.backend,
                    "dataset": answers.dataset,
                    "dataset_size": len(answers.items),
                    "judge_model": settings.evals.judge_model or "none",
                    "chunk_chars": CHUNK_CHARS,
                },
                metrics=metrics,
                tables={"per_question": [{k: v for k, v in asdict(r).items() if k != "features"} for r in records]},
            )
        )
        lines.append(
            f"| {model} | {metrics['token_f1']:.3f} | {metrics['groundedness']:.3f} | "
            f"{metrics['citation_accuracy']:.3f} | {metrics['cited_share']:.2f} | "
            f"{metrics['latency_p50_s']:.2f} | {metrics['cost_per_answer']:.2e} |"
        )
    lines += [
        "",
        "Token F1 against a one-sentence reference (long answers score low by construction); "
        f"groundedness: share of answer sentences with >= {SUPPORT_THRESHOLD:.0%} of their content words "
        "in one retrieved chunk; citation acc.: share of [n] citations pointing at a gold chunk; cited: "
        "share of answers citing anything. Cost of a self-hosted answer: llm.machine_cost_per_hour x its "
        "wall time, so a loaded CPU makes it dearer.",
    ]
    return EvalReport(EXPERIMENT, runs, "\n".join(lines))


def evaluate(settings: Settings, quick: bool = False) -> EvalReport:
    """The harness entry point: quick = the first model of `evals.answer_models` on 3 questions;
    else every model on `evals.answer_limit` questions (0: all)."""
    return report(collect_answers(settings, quick, limit=settings.evals.answer_limit or None), settings)
