"""Memory eval: does long-term memory make answers right, and never leak?

Against the running platform. Every user of evals/datasets/memory_users.jsonl (evals/memory_dataset.py)
tells the memory bento its sessions, in order, as exchanges (the bento extracts the facts with its
extraction model through the LLM bento, in the background); then every question is answered by each
of `evals.memory_models` through the LLM bento twice, with the prompt the router will build: once with
the user's memories (router/memory_context.py: the most relevant within MEMORY_BUDGET_TOKENS) and once
without (the baseline). A `docs` question gets the RAG prompt with the retriever's hits from the
collection in settings. The eval's users live in scopes of their own (`eval-<run>-<scope>`), deleted
at the end.

Scored by a rule (memory_dataset.correct: the key facts present, the forbidden ones absent), per
question type and on the held-out users apart; with `evals.judge_model` set, an LLM judge's verdict as
a secondary figure. Leaks, which must be 0: memories recalled for a user that are not that user's
(read back from the bento), and answers with memory on that name another user's fact (`other_user`
questions) which the memories given to the model held. An answer that names it although no memory
given held it is the model's guess (the commonest answer: "diabetes" for a chronic condition), counted
apart as `guesses`: the platform did not pass it on.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field

import httpx

from evals.generation import AnswerCache, Generator, generate_cached, generator_for
from evals.harness_types import EvalReport, EvalRun, ParamValue
from evals.memory_dataset import TYPES, EvalUser, Question, correct, load_users, mentions
from ragyard.clients.memory import MemoryClient
from ragyard.contracts.memory import ExchangeMessage
from ragyard.contracts.retriever import Hit
from ragyard.settings import Settings
from router.chat import Message, wire_messages
from router.memory_context import MemoryContext, recall, with_memories

log = logging.getLogger(__name__)

EXPERIMENT = "ragyard-memory"
MAX_TOKENS = 48
MEMORY_BUDGET_TOKENS = 200
RECALL_TOP_K = 8
DOC_CHUNKS = 3
DOC_CHARS = 600
POLL_S = 2.0
STALL_S = 1800.0  # no extraction job ended for this long: the platform is stuck
FINISHED = ("done", "failed", "dropped")


@dataclass
class Extraction:
    """What the replay of the sessions did to the memory bento."""

    jobs: Counter = field(default_factory=Counter)  # by final state, and "skipped" (nothing to extract)
    operations: Counter = field(default_factory=Counter)
    seconds: list[float] = field(default_factory=list)  # per job: from the previous job's end to its own
    memories: dict[str, list[str]] = field(default_factory=dict)  # user key -> memory texts after the replay
    raw_pii: list[str] = field(default_factory=list)  # raw values of `pii` found in stored memories
    foreign_recalls: int = 0  # recalled memory ids that are not the asking user's


@dataclass
class Record:
    id: str
    user: str
    heldout: bool
    type: str
    model: str
    memory: bool
    answer: str
    correct: bool
    leak: bool  # another user's fact in the answer, and in the memories the model was given
    guess: bool  # another user's fact in the answer, in none of the memories given
    stale: bool
    memories_used: int
    judge: bool | None = None


async def replay(client: MemoryClient, users: list[EvalUser], scope_of: dict[str, str]) -> Extraction:
    """Every session's turns as exchanges, at their timestamps; waits for the extraction of all."""
    extraction = Extraction()
    pending: list[tuple[EvalUser, str]] = []
    for user in users:
        for session in user.sessions:
            for turn in session.turns:
                added = await client.add_exchange(
                    scope_of[user.scope],
                    user.user,
                    [
                        ExchangeMessage(role="user", content=turn.user),
                        ExchangeMessage(role="assistant", content=turn.assistant),
                    ],
                    at=session.at,
                )
                if added.status == "queued" and added.job_id is not None:
                    pending.append((user, added.job_id))
                else:
                    extraction.jobs["skipped"] += 1
    last_end, progress = time.time(), time.monotonic()
    for user, job_id in pending:  # one worker extracts them in this order
        while (status := await client.job(scope_of[user.scope], user.user, job_id)).state not in FINISHED:
            if time.monotonic() - progress > STALL_S:
                raise RuntimeError(
                    f"no extraction finished in {STALL_S:.0f} s (job {job_id}: {status.state}, {status.error})"
                )
            await asyncio.sleep(POLL_S)
        progress = time.monotonic()
        extraction.jobs[status.state] += 1
        extraction.operations.update(op.op for op in status.operations)
        if status.finished_at:
            extraction.seconds.append(status.finished_at - max(status.created_at, last_end))
            last_end = status.finished_at
    for user in users:
        page = await client.list(scope_of[user.scope], user.user, limit=500)
        texts = [m.text for m in page.memories]
        extraction.memories[user.key] = texts
        extraction.raw_pii += [value for value in user.pii if any(value.lower() in t.lower() for t in texts)]
    return extraction


async def collect_memories(settings: Settings, users: list[EvalUser]) -> tuple[Extraction, dict[str, MemoryContext]]:
    """Replay the sessions, then recall each question's memories; the eval's scopes are deleted after."""
    run = uuid.uuid4().hex[:8]
    scope_of = {user.scope: f"eval-{run}-{user.scope}" for user in users}
    async with httpx.AsyncClient() as http:
        client = MemoryClient(settings.memory.url, http, timeout_s=120.0)
        try:
            extraction = await replay(client, users, scope_of)
            contexts = {}
            for user in users:
                own = {m.id for m in (await client.list(scope_of[user.scope], user.user, limit=500)).memories}
                for question in user.questions:
                    context = await recall(
                        client,
                        scope_of[user.scope],
                        user.user,
                        question.question,
                        MEMORY_BUDGET_TOKENS,
                        RECALL_TOP_K,
                        timeout_s=60.0,
                    )
                    if context.error:
                        raise RuntimeError(f"{question.id}: the memory bento could not recall: {context.error}")
                    extraction.foreign_recalls += len(set(context.ids) - own)
                    contexts[question.id] = context
        finally:
            for user in users:
                await client.delete_user(scope_of[user.scope], user.user)
    return extraction, contexts


def docs_hits(settings: Settings, questions: list[Question]) -> dict[str, list[Hit]]:
    """The retriever's hybrid hits for the `docs` questions (in-process, on the collection in settings)."""
    from evals.answers import retrieve_contexts

    asked = [q for q in questions if q.docs]
    if not asked:
        return {}
    found = retrieve_contexts(settings, [q.question for q in asked], DOC_CHUNKS)
    return {q.id: [Hit.model_validate(hit) for hit in hits] for q, hits in zip(asked, found, strict=True)}


def base_messages(question: Question, hits: list[Hit] | None, prompt) -> list[Message]:
    """The router's prompt before memories: the RAG prompt for a docs question, the bare question else."""
    from router.rag_prompt import rag_messages

    asked = [Message("user", question.question)]
    if hits is None:
        return asked
    return rag_messages(prompt, hits, [], asked, DOC_CHARS)


JUDGE_PROMPT = (
    "A user asked an assistant a question about themselves. A correct answer states: {expect}. It must not "
    "state: {forbid}.\nQuestion: {question}\nAnswer: {answer}\nIs the answer correct? Reply yes or no."
)


def judge(generator: Generator, cache: AnswerCache, model: str, question: Question, answer: str) -> bool | None:
    expect = "; ".join(" or ".join(group) for group in question.expect) or "nothing (it should say it does not know)"
    prompt = JUDGE_PROMPT.format(
        expect=expect, forbid=", ".join(question.forbid) or "-", question=question.question, answer=answer
    )
    reply, _ = generate_cached(cache, generator, model, [{"role": "user", "content": prompt}], 3)
    verdict = reply.text.strip().lower()
    return True if verdict.startswith("yes") else False if verdict.startswith("no") else None


def another_users_fact(answer: str, question: Question, given: str | None) -> tuple[bool, bool]:
    """(leak, guess) of an answer made with the memories `given` (None: memory off): does it name
    another user's fact (an `other_user` question's forbidden terms), passed on by the memories or not."""
    if given is None or question.type != "other_user" or not mentions(answer, question.forbid):
        return False, False
    passed_on = mentions(given, question.forbid)
    return passed_on, not passed_on


def answer_all(
    settings: Settings, users: list[EvalUser], contexts: dict[str, MemoryContext], models: list[str]
) -> list[Record]:
    from router.prompts import PromptResolver

    prompt = PromptResolver.from_settings(settings).resolve()
    hits = docs_hits(settings, [q for user in users for q in user.questions])
    generator, cache = generator_for(settings), AnswerCache.for_settings(settings)
    records = []
    for user in users:
        for question in user.questions:
            base = base_messages(question, hits.get(question.id), prompt)
            for model in models:
                for memory in (True, False):
                    block = contexts[question.id].block
                    memories = [Message("system", block)] if memory and block else []
                    messages = wire_messages(with_memories(base, memories))
                    reply, _ = generate_cached(cache, generator, model, messages, MAX_TOKENS)
                    text = reply.text
                    leak, guess = another_users_fact(text, question, block if memory else None)
                    records.append(
                        Record(
                            question.id,
                            user.key,
                            user.heldout,
                            question.type,
                            model,
                            memory,
                            text,
                            correct(text, question),
                            leak=leak,
                            guess=guess,
                            stale=bool(question.stale)
                            and mentions(text, question.stale)
                            and not correct(text, question),
                            memories_used=len(contexts[question.id].ids) if memory else 0,
                            judge=judge(generator, cache, settings.evals.judge_model, question, text)
                            if settings.evals.judge_model
                            else None,
                        )
                    )
                    log.info("%s %s memory=%s: %s", question.id, model, memory, records[-1].correct)
    return records


def accuracy(records: list[Record]) -> float:
    return sum(r.correct for r in records) / len(records) if records else float("nan")


def answer_metrics(records: list[Record]) -> dict[str, float]:
    metrics = {
        "accuracy": accuracy(records),
        "heldout_accuracy": accuracy([r for r in records if r.heldout]),
        "tune_accuracy": accuracy([r for r in records if not r.heldout]),
        "leaks": sum(r.leak for r in records),
        "guesses": sum(r.guess for r in records),
        "stale_answers": sum(r.stale for r in records),
        "memories_used_mean": statistics.fmean(r.memories_used for r in records),
    }
    for qtype in TYPES:
        metrics[f"accuracy_{qtype}"] = accuracy([r for r in records if r.type == qtype])
        metrics[f"heldout_accuracy_{qtype}"] = accuracy([r for r in records if r.type == qtype and r.heldout])
    judged = [r.judge for r in records if r.judge is not None]
    if judged:
        metrics["judge_accuracy"] = sum(judged) / len(judged)
    return metrics


def extraction_metrics(extraction: Extraction) -> dict[str, float]:
    stored = [len(texts) for texts in extraction.memories.values()]
    return {
        **{f"jobs_{state}": extraction.jobs[state] for state in (*FINISHED, "skipped")},
        **{f"operations_{op}": extraction.operations[op] for op in ("add", "update", "delete", "duplicate", "dropped")},
        "extraction_seconds_median": statistics.median(extraction.seconds) if extraction.seconds else 0.0,
        "memories_per_user_mean": statistics.fmean(stored) if stored else 0.0,
        "raw_pii_stored": len(extraction.raw_pii),
        "foreign_recalls": extraction.foreign_recalls,
    }


def report(
    settings: Settings, users: list[EvalUser], models: list[str], extraction: Extraction, records: list[Record]
) -> EvalReport:
    heldout = [u for u in users if u.heldout]
    params: dict[str, ParamValue] = {
        "dataset": "memory_users",
        "users": len(users),
        "heldout_users": len(heldout),
        "questions": sum(len(u.questions) for u in users),
        "extraction_model": settings.memory.extraction_model,
        "update_similarity": settings.memory.update_similarity,
        "memory_budget_tokens": MEMORY_BUDGET_TOKENS,
        "recall_top_k": RECALL_TOP_K,
        "max_tokens": MAX_TOKENS,
        "judge_model": settings.evals.judge_model or "none",
    }
    runs = [
        EvalRun(
            "memory-extraction",
            params,
            extraction_metrics(extraction),
            {"memories": [{"user": key, "memories": texts} for key, texts in extraction.memories.items()]},
        )
    ]
    lines = [
        f"Memory eval: {len(users)} users ({len(heldout)} held out: nothing was tuned on them), "
        f"{params['questions']} questions; facts extracted by `{settings.memory.extraction_model}`, answers "
        f"with at most {MAX_TOKENS} tokens, memories within {MEMORY_BUDGET_TOKENS} tokens.",
        "",
        "| model | memory | held-out accuracy | " + " | ".join(TYPES) + " | tune-split accuracy | leaks | guesses |",
        "| --- | --- | ---: | " + " | ".join("---:" for _ in TYPES) + " | ---: | ---: | ---: |",
    ]
    for model in models:
        for memory in (True, False):
            chosen = [r for r in records if r.model == model and r.memory == memory]
            metrics = answer_metrics(chosen)
            runs.append(
                EvalRun(
                    f"memory-{model}-{'on' if memory else 'off'}",
                    {**params, "model": model, "memory": memory},
                    metrics,
                    {"per_question": [asdict(r) for r in chosen]},
                )
            )
            lines.append(
                f"| {model} | {'on' if memory else 'off'} | {metrics['heldout_accuracy']:.2f} | "
                + " | ".join(f"{metrics[f'heldout_accuracy_{t}']:.2f}" for t in TYPES)
                + f" | {metrics['tune_accuracy']:.2f} | {int(metrics['leaks'])} | {int(metrics['guesses'])} |"
            )
    x = extraction_metrics(extraction)
    lines += [
        "",
        f"Extraction: {x['jobs_done']:.0f} exchanges extracted, {x['jobs_skipped']:.0f} skipped without the "
        f"model (no first-person words), {x['jobs_failed'] + x['jobs_dropped']:.0f} failed; operations: "
        f"{x['operations_add']:.0f} add, {x['operations_update']:.0f} update, {x['operations_delete']:.0f} "
        f"delete, {x['operations_duplicate']:.0f} duplicate, {x['operations_dropped']:.0f} dropped by the "
        f"gate; {x['memories_per_user_mean']:.1f} memories per user; median "
        f"{x['extraction_seconds_median']:.1f} s per exchange. Privacy: {x['raw_pii_stored']:.0f} raw PII "
        f"values stored (of {sum(len(u.pii) for u in users)} said), {x['foreign_recalls']:.0f} memories "
        "recalled for a user that were not theirs.",
        "",
        "Accuracy: share of answers holding every key fact and none of the forbidden ones "
        "(evals/memory_dataset.py); `forgotten` and `other user` are right when the fact is absent, so memory "
        "off scores them high by construction: their point is that memory on must not lower them. Leaks: "
        "answers with memory on that hold another user's fact which the memories given to the model held; "
        "guesses: answers with memory on that hold it although no memory given did (the model's guess). "
        "Anchors, not comparable (other data, hosted "
        "models, an LLM judge): mem0 reports 66.9% LLM-judge accuracy on LoCoMo, Zep about 75%.",
    ]
    return EvalReport(EXPERIMENT, runs, "\n".join(lines))


def quick_users(users: list[EvalUser]) -> list[EvalUser]:
    """A few users that between them ask every type of question."""
    chosen: list[EvalUser] = []
    covered: set[str] = set()
    for user in users:
        types = {q.type for q in user.questions}
        if not types <= covered:
            chosen.append(user)
            covered |= types
    return chosen


def evaluate(settings: Settings, quick: bool = False) -> EvalReport:
    """The harness entry point: quick = a few users covering every question type, the first model."""
    users, models = load_users(), list(settings.evals.memory_models)
    if quick:
        users, models = quick_users(users), models[:1]
    extraction, contexts = asyncio.run(collect_memories(settings, users))
    return report(settings, users, models, extraction, answer_all(settings, users, contexts, models))
