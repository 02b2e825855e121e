"""SQLite answer eval (issue 19): the models answering from documentation nothing in ragyard was tuned on.

The whole folder of Debian's sqlite3-doc HTML (`evals.sqlite_docs`) is indexed, as source `sqlite-docs`, by
the ingestion itself into a home and collection of the eval's own (RAGYARD_HOME/evals/sqlite-docs,
`<milvus.collection>_sqlite_docs`; evals/eval_index.py), again only when its ledger says the docs changed.
Each question of evals/datasets/sqlite_docs_answers.jsonl (split by page: evals/sqlite_answers_dataset.py)
gets the hybrid retriever's top `router.top_k` chunks in the RAG prompt exactly as the router builds it
(router/rag_prompt.py, the prompt from MLflow as the router resolves it), and every model of
`evals.sqlite_models` answers (evals/generation.py, cached). Scored per model and per half, held-out first:
fact recall and all-facts rate (bootstrap 95% intervals), groundedness (ragyard/grounding.py), citation
accuracy, retrieval hit@k, latency; the summary's last paragraph defines each.
"""

from __future__ import annotations

import logging
import re
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from evals.answers import retrieve_contexts
from evals.eval_index import OwnIndex, ensure_index, own_index_settings
from evals.generation import AnswerCache, Generation, Generator, generate_cached, generator_for
from evals.harness_types import EvalReport, EvalRun, ParamValue
from evals.splits import Interval, bootstrap
from evals.sqlite_answers_dataset import DATASET, SEED, TYPES, SqliteQuestion, docs_folder, load_questions, score, split
from ragyard import collection as col
from ragyard.contracts.retriever import Hit
from ragyard.grounding import grounding
from ragyard.settings import Settings, SourceSettings
from router.chat import Message, wire_messages
from router.rag_prompt import rag_messages

log = logging.getLogger(__name__)

EXPERIMENT = "ragyard-sqlite-answers"
SOURCE = "sqlite-docs"
MAX_TOKENS = 128  # room for a two-part answer with its citations; small models on a shared CPU
HALVES = ("held_out", "tuning")  # reported in this order
_CITATION = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")  # [1], [2][3], [1, 2]


def cited_passages(answer: str, k: int) -> list[int]:
    """The passage numbers (1..k) the answer cites by `[n]` markers, each once, in order."""
    found = {int(n) for group in _CITATION.findall(answer) for n in group.split(",")}
    return sorted(n for n in found if 1 <= n <= k)


def gold_doc_ids(question: SqliteQuestion) -> frozenset[str]:
    """The document ids the ingestion gives the question's pages in the `sqlite-docs` source."""
    return frozenset(col.fit_id(f"{SOURCE}:{page}", col.DOC_ID_MAX_BYTES) for page in question.pages)


def passage_texts(hits: Sequence[Hit], max_chars: int) -> list[str]:
    """What the model read of each passage: its title and its text as far as the prompt keeps it."""
    return [f"{hit.title}\n{hit.text[:max_chars]}" for hit in hits]


@dataclass
class AnswerRecord:
    id: str
    half: str  # "held_out" or "tuning"
    type: str
    model: str
    answer: str
    facts: int
    facts_found: int
    claims: list[str]
    unsupported: list[str]  # claims in none of the passages nor the question
    cited: list[int]  # passage numbers the answer cites
    gold_passages: list[int]  # numbers of the passages from a gold page
    seconds: float
    completion_tokens: int = 0
    cached: bool = False
    retrieved: list[str] = field(default_factory=list)  # the passages' document ids, in prompt order

    @property
    def all_facts(self) -> bool:
        return self.facts_found == self.facts

    @property
    def grounded(self) -> bool:
        return not self.unsupported

    @property
    def cites_gold(self) -> bool:
        return bool(set(self.cited) & set(self.gold_passages))

    @property
    def retrieval_hit(self) -> bool:
        return bool(self.gold_passages)

    def row(self) -> dict:
        return {
            **asdict(self),
            **{k: getattr(self, k) for k in ("all_facts", "grounded", "cites_gold", "retrieval_hit")},
        }


def score_answer(
    question: SqliteQuestion, half: str, hits: Sequence[Hit], generation: Generation, cached: bool, max_chars: int
) -> AnswerRecord:
    """One answer scored against its question's facts and the passages its prompt held."""
    found, _ = score(generation.text, question)
    checked = grounding(generation.text, [*passage_texts(hits, max_chars), question.question])
    gold = gold_doc_ids(question)
    return AnswerRecord(
        id=question.id,
        half=half,
        type=question.type,
        model=generation.model,
        answer=generation.text,
        facts=len(question.facts),
        facts_found=found,
        claims=list(checked.claims),
        unsupported=list(checked.unsupported),
        cited=cited_passages(generation.text, len(hits)),
        gold_passages=[n for n, hit in enumerate(hits, start=1) if hit.doc_id in gold],
        seconds=generation.seconds,
        completion_tokens=generation.completion_tokens,
        cached=cached,
        retrieved=[hit.doc_id for hit in hits],
    )


def fact_recall(records: Sequence[AnswerRecord]) -> float:
    facts = sum(r.facts for r in records)
    return sum(r.facts_found for r in records) / facts if facts else 0.0


def all_facts_rate(records: Sequence[AnswerRecord]) -> float:
    return sum(r.all_facts for r in records) / len(records) if records else 0.0


def half_metrics(records: Sequence[AnswerRecord]) -> dict[str, float]:
    """The metrics of one model's answers on one half; empty for no answers."""
    if not records:
        return {}
    recall, complete = bootstrap(records, fact_recall), bootstrap(records, all_facts_rate)
    return {
        "questions": len(records),
        "fact_recall": recall.value,
        "fact_recall_low": recall.low,
        "fact_recall_high": recall.high,
        "all_facts_rate": complete.value,
        "all_facts_rate_low": complete.low,
        "all_facts_rate_high": complete.high,
        "groundedness_rate": statistics.fmean(r.grounded for r in records),
        "unsupported_claims_mean": statistics.fmean(len(r.unsupported) for r in records),
        "citation_accuracy": statistics.fmean(r.cites_gold for r in records),
        "cited_share": statistics.fmean(bool(r.cited) for r in records),
        "retrieval_hit_at_k": statistics.fmean(r.retrieval_hit for r in records),
        "latency_p50_s": statistics.median(r.seconds for r in records),
    }


def model_metrics(records: Sequence[AnswerRecord]) -> dict[str, float]:
    """One model's metrics, each half's under its prefix (`held_out_`, `tuning_`)."""
    return {
        f"{half}_{name}": value
        for half in HALVES
        for name, value in half_metrics([r for r in records if r.half == half]).items()
    }


def quick_subset(tuning: list[SqliteQuestion], held_out: list[SqliteQuestion]) -> dict[str, list[SqliteQuestion]]:
    """The first question of each type from each half."""
    first = {half: {q.type: q for q in reversed(qs)} for half, qs in (("tuning", tuning), ("held_out", held_out))}
    return {half: [first[half][t] for t in TYPES if t in first[half]] for half in HALVES}


def index_settings(settings: Settings) -> Settings:
    """The SQLite docs folder as the one source of an index of its own under RAGYARD_HOME."""
    source = SourceSettings(name=SOURCE, path=docs_folder(settings), include=["*.html"])
    collection = f"{settings.milvus.collection}_sqlite_docs"
    return own_index_settings(settings, settings.home / "evals" / "sqlite-docs", collection, [source])


@dataclass
class AnswerRun:
    halves: dict[str, list[SqliteQuestion]]
    models: list[str]
    records: list[AnswerRecord]
    index: OwnIndex
    prompt: str  # name@version
    backend: str


def collect(
    settings: Settings, halves: dict[str, list[SqliteQuestion]], models: list[str], generator: Generator | None = None
) -> AnswerRun:
    """Index the docs if they changed, retrieve for every question, and let every model answer it."""
    from router.prompts import PromptResolver

    folder = docs_folder(settings)
    if not folder.is_dir() or not any(folder.glob("*.html")):
        raise FileNotFoundError(f"no SQLite documentation in {folder}: install Debian's sqlite3-doc")
    index = ensure_index(index_settings(settings))
    asked = [(half, q) for half in HALVES for q in halves.get(half, [])]
    k, max_chars = settings.router.top_k, settings.router.max_context_chars
    contexts = retrieve_contexts(index.settings, [q.question for _, q in asked], k)
    prompt = PromptResolver.from_settings(settings).resolve()
    generator = generator or generator_for(settings)
    cache = AnswerCache.for_settings(settings)
    records = []
    # Question-major, so that an interrupted run leaves whole questions in the cache.
    for (half, question), found in zip(asked, contexts, strict=True):
        hits = [Hit.model_validate(hit) for hit in found]
        messages = wire_messages(rag_messages(prompt, hits, [], [Message("user", question.question)], max_chars))
        for model in models:
            generation, cached = generate_cached(cache, generator, model, messages, MAX_TOKENS)
            records.append(score_answer(question, half, hits, generation, cached, max_chars))
            log.info("%s %s: %d/%d facts", question.id, model, records[-1].facts_found, len(question.facts))
    version = f"{prompt.name}@{prompt.version or prompt.alias}"
    return AnswerRun(halves, models, records, index, version, generator.backend)


def _cell(metrics: dict[str, float], half: str, name: str) -> str:
    value, low, high = (metrics[f"{half}_{name}{end}"] for end in ("", "_low", "_high"))
    return Interval(value, low, high).percent()


def half_table(run: AnswerRun, half: str, metrics: dict[str, dict[str, float]]) -> list[str]:
    """The Markdown table of one half: a row per model."""
    lines = [
        f"**{half.replace('_', '-').capitalize()} half** ({len(run.halves.get(half, []))} questions):",
        "",
        "| model | fact recall [95% CI] | all facts [95% CI] | grounded | unsupported claims / answer "
        "| citation acc. | retrieval hit@k | latency p50 s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for model in run.models:
        m = metrics[model]
        if f"{half}_questions" not in m:
            lines.append(f"| {model} | no questions | | | | | | |")
            continue
        lines.append(
            f"| {model} | {_cell(m, half, 'fact_recall')} | {_cell(m, half, 'all_facts_rate')} "
            f"| {m[f'{half}_groundedness_rate']:.1%} | {m[f'{half}_unsupported_claims_mean']:.2f} "
            f"| {m[f'{half}_citation_accuracy']:.1%} | {m[f'{half}_retrieval_hit_at_k']:.1%} "
            f"| {m[f'{half}_latency_p50_s']:.1f} |"
        )
    return [*lines, ""]


def report(run: AnswerRun, settings: Settings, quick: bool) -> EvalReport:
    k, max_chars = settings.router.top_k, settings.router.max_context_chars
    questions = [q for half in HALVES for q in run.halves.get(half, [])]
    mix = Counter(q.type for q in questions)
    index = run.index
    params: dict[str, ParamValue] = {
        "dataset": DATASET.stem,
        "dataset_size": len(questions),
        "held_out_questions": len(run.halves.get("held_out", [])),
        "tuning_questions": len(run.halves.get("tuning", [])),
        "split": "by page group",
        "split_seed": SEED,
        "retriever_mode": "hybrid",
        "context_chunks": k,
        "max_context_chars": max_chars,
        "max_tokens": MAX_TOKENS,
        "prompt": run.prompt,
        "generation_backend": run.backend,
        "docs_folder": str(docs_folder(settings)),
        # this eval's own index, over the platform's that the harness's common params name
        "collection": index.settings.milvus.collection,
        "index_version": index.version,
        "index_documents": index.documents,
        "index_chunks": index.chunks,
        "index_skipped_files": index.skipped_files,
    }
    metrics = {m: model_metrics([r for r in run.records if r.model == m]) for m in run.models}
    runs = [
        EvalRun(
            f"sqlite-answers-{model}",
            {**params, "model": model},
            metrics[model],
            {"per_question": [r.row() for r in run.records if r.model == model]},
        )
        for model in run.models
    ]
    lines = [
        ("Quick: the first model, one question of each type from each half. " if quick else "")
        + f"{len(questions)} hand-written questions on SQLite's documentation (`{DATASET.name}`: "
        + ", ".join(f"{mix[t]} {t}" for t in TYPES)
        + "), a corpus nothing in ragyard was tuned on, with the facts a right answer states. Split by page "
        f"(evals/splits.py, seed {SEED}; no page in both halves): {params['held_out_questions']} held-out, "
        f"{params['tuning_questions']} tuning. Nothing was tuned on the held-out half; the tuning half is "
        "reported apart, below it. Each question: the hybrid retriever's top "
        f"{k} chunks of this eval's own index of `{params['docs_folder']}` (collection `{params['collection']}`, "
        f"version `{index.version}`: {index.chunks:,} chunks of {index.documents:,} pages, {index.skipped_files} "
        "files skipped by the parser; the platform's chunker and embedder), in the router's RAG prompt "
        f"({run.prompt}, passages cut at {max_chars} characters); answers of at most {MAX_TOKENS} tokens, greedy, "
        f"from {', '.join(run.models)} ({run.backend}).",
        "",
        *(line for half in HALVES for line in half_table(run, half, metrics)),
        "Fact recall: facts found over facts (a fact is found when the answer mentions one of its forms); all "
        "facts: answers holding every fact; intervals: 95% bootstrap over questions. Grounded: answers whose "
        "checkable claims (numbers, names, options, code; ragyard/grounding.py) all appear in the passages or "
        "the question; unsupported claims: those that do not, per answer. Citation acc.: answers citing at "
        "least one passage from a gold page by its [n]; retrieval hit@k: questions with a gold page among the "
        "passages, the ceiling of citation accuracy. Latency: the answer's wall time when it was generated "
        "(cached answers keep theirs).",
    ]
    return EvalReport(EXPERIMENT, runs, "\n".join(lines))


def evaluate(settings: Settings, quick: bool = False, question_ids: Sequence[str] | None = None) -> EvalReport:
    """The harness entry point: every model of `evals.sqlite_models` on every question; quick: the first
    model on one question of each type from each half. `question_ids`: ask only these (each in its half of
    the whole set's split)."""
    tuning, held_out = split(load_questions())
    if question_ids is not None:
        tuning, held_out = ([q for q in half if q.id in question_ids] for half in (tuning, held_out))
    halves = (
        quick_subset(tuning, held_out) if quick and question_ids is None else {"held_out": held_out, "tuning": tuning}
    )
    models = list(settings.evals.sqlite_models)[: 1 if quick else None]
    return report(collect(settings, halves, models), settings, quick)
