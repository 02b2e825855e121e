"""Cache eval: what the router's response cache would serve on Python-docs questions, and how often wrongly.

Everything goes through the router's own `ResponseCache`, keyed as the router keys it
(`evals.cache_replays`), with question vectors from the configured embedding model (the embedder
bento serves the same vectors). A hit is false when the answer served was stored for a question
whose gold shares no section with the asker's: the user gets an answer about something else.
Per similarity threshold, three replays, each through a fresh cache:

1. In order: the retrieval questions (each about a different section), then the paraphrases of
   them, then the near-misses (`evals.cache_datasets`). How many paraphrases are served their
   question's answer, and how many near-misses are served the wrong one.
2. Traffic: `TRAFFIC_REQUESTS` questions, topics drawn with Zipf-like popularity and phrased
   any of their ways (the question, a paraphrase, a near-miss), seeded: the exact-hit,
   semantic-hit and false-hit rates a deployment would see, and the reuse ceiling (the share whose
   gold an earlier request already had: what a perfect cache would hit).
3. Sessions: 2-3-turn conversations, with the router's memory (a session id) and stateless (the
   client resends the conversation). A follow-up must never be served an answer stored after
   other earlier turns; sessions that share their opening show what a shared history hits; the
   same sessions with the conversation left out of the scope show what that scoping prevents.

The summary recommends the lowest threshold at which no replay served a wrong answer.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from evals.cache_datasets import (
    FOLLOW_UP,
    NEAR_MISS,
    PARAPHRASE,
    QUESTION,
    Asked,
    Session,
    as_asked,
    load_near_misses,
    load_paraphrases,
    load_sessions,
)
from evals.cache_replays import Keys, Replay, Served, history_blind_keys, replay_sessions, router_keys, zipf_traffic
from evals.harness_types import EvalReport, EvalRun, ParamValue
from evals.retrieval import DEFAULT_DATASET, load_dataset, quick_subset
from ragyard.embedding import EmbeddingModel
from ragyard.settings import Settings

EXPERIMENT = "ragyard-cache"
TRAFFIC_REQUESTS, QUICK_TRAFFIC_REQUESTS = 1000, 300
TRAFFIC_SEED, ZIPF_EXPONENT = 20261127, 1.0
FALSE_HITS_SHOWN = 6


def thresholds(configured: float) -> list[float]:
    return sorted({0.80, 0.85, 0.88, 0.90, 0.92, 0.94, 0.96, 0.98, configured})


def share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def hit_rates(served: list[Served]) -> dict[str, float]:
    """Exact, semantic and false hits of a replay; false-hit rate is of the hits."""
    hits = [s for s in served if s.hit]
    false = sum(s.false for s in hits)
    return {
        "requests": float(len(served)),
        "exact_hit_rate": share(sum(s.result == "exact" for s in hits), len(served)),
        "semantic_hit_rate": share(sum(s.result == "semantic" for s in hits), len(served)),
        "false_hits": float(false),
        "false_hit_rate": share(false, len(hits)),
        "reuse_ceiling": share(sum(s.reusable for s in served), len(served)),
    }


def ordered_metrics(served: list[Served]) -> dict[str, float]:
    by_kind = defaultdict(list)
    for s in served:
        by_kind[s.asked.kind].append(s)
    paraphrases, near = by_kind[PARAPHRASE], by_kind[NEAR_MISS]
    return {
        "paraphrase_hit_rate": share(sum(s.hit and not s.false for s in paraphrases), len(paraphrases)),
        "paraphrase_false_hit_rate": share(sum(s.false for s in paraphrases), len(paraphrases)),
        "near_miss_false_hit_rate": share(sum(s.false for s in near), len(near)),
        "near_miss_true_hit_rate": share(sum(s.hit and not s.false for s in near), len(near)),
        "question_false_hits": float(sum(s.false for s in by_kind[QUESTION])),
    }


def session_metrics(served: list[Served]) -> dict[str, float]:
    followups = [s for s in served if s.asked.kind == FOLLOW_UP]
    shared = [s for s in followups if s.shared_history]
    return {
        "followups": float(len(followups)),
        "followup_other_conversation_hits": float(sum(s.hit and s.other_conversation for s in followups)),
        "followups_after_shared_history": float(len(shared)),
        "followup_exact_hits": float(sum(s.result == "exact" for s in followups)),
        "followup_semantic_hits": float(sum(s.result == "semantic" for s in followups)),
        "followup_false_hits": float(sum(s.false for s in followups)),
    }


def prefixed(prefix: str, metrics: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}_{key}": value for key, value in metrics.items()}


def run_threshold(
    threshold: float,
    vectors: Mapping[str, np.ndarray],
    ordered: list[Asked],
    traffic: list[Asked],
    sessions: list[Session],
) -> tuple[dict[str, float], dict[str, list[dict]]]:
    """Every replay through its own fresh cache: metrics and detail tables."""
    with tempfile.TemporaryDirectory(prefix="ragyard-cache-eval-") as tmp:

        def fresh(name: str, keys: Keys = router_keys) -> Replay:
            return Replay(Path(tmp) / f"{name}.sqlite3", threshold, vectors, keys)

        replay = fresh("ordered")
        in_order = [replay.ask(a)[0] for a in ordered]
        replay = fresh("traffic")
        requests = [replay.ask(a)[0] for a in traffic]
        memory = replay_sessions(fresh("memory"), sessions, stateless=False)
        stateless = replay_sessions(fresh("stateless"), sessions, stateless=True)
        blind = replay_sessions(fresh("blind", history_blind_keys), sessions, stateless=False)
    false = [s for s in [*in_order, *requests, *memory, *stateless] if s.false]
    metrics = {
        **ordered_metrics(in_order),
        **prefixed("traffic", hit_rates(requests)),
        **prefixed("sessions", session_metrics(memory)),
        **prefixed("stateless", session_metrics(stateless)),
        **prefixed("blind", session_metrics(blind)),
        "false_hits_total": float(len(false)),
    }
    tables = {
        "false_hits": [s.row() for s in false],
        "near_misses": [s.row() for s in in_order if s.asked.kind == NEAR_MISS],
        "sessions": [{**s.row(), "mode": "memory"} for s in memory]
        + [{**s.row(), "mode": "stateless"} for s in stateless]
        + [{**s.row(), "mode": "history-blind"} for s in blind],
    }
    return metrics, tables


def recommended(results: dict[float, dict[str, float]]) -> float | None:
    """The lowest threshold (the most hits) at which no replay served a wrong answer; None if none."""
    clean = [t for t, m in sorted(results.items()) if m["false_hits_total"] == 0]
    return clean[0] if clean else None


def load_all(quick: bool) -> tuple[str, list[Asked], list[Asked], list[Session]]:
    """(dataset name, questions, their paraphrases and near-misses, sessions) of the Python-docs set
    (the hand-written files name its questions); quick: every fourth question with what asks
    about it, and the sessions."""
    questions = load_dataset(DEFAULT_DATASET)
    variants = [*load_paraphrases(questions), *load_near_misses(questions)]
    sessions = load_sessions(questions)
    name = DEFAULT_DATASET.name.split(".")[0]
    if quick:
        questions, name = quick_subset(questions), f"{name}-quick"
        kept = {q.id for q in questions}
        variants = [v for v in variants if v.of in kept]
    return name, [as_asked(q) for q in questions], variants, sessions


def evaluate(settings: Settings, quick: bool = False, model: EmbeddingModel | None = None) -> EvalReport:
    name, questions, variants, sessions = load_all(quick)
    ordered = [*questions, *variants]  # variants: the paraphrases, then the near-misses
    phrasings = defaultdict(list)
    for asked in ordered:
        phrasings[asked.of].append(asked)
    requests = QUICK_TRAFFIC_REQUESTS if quick else TRAFFIC_REQUESTS
    traffic = zipf_traffic(phrasings, requests, TRAFFIC_SEED, ZIPF_EXPONENT)
    model = model or EmbeddingModel.from_settings(settings)
    texts = sorted({a.question for a in ordered} | {t.question for s in sessions for t in s.turns})
    vectors = dict(zip(texts, model.encode(texts, normalize=True), strict=True))
    configured = settings.router.semantic_threshold
    params: dict[str, ParamValue] = {
        "dataset": name,
        "questions": len(questions),
        "paraphrases": sum(v.kind == PARAPHRASE for v in variants),
        "near_misses": sum(v.kind == NEAR_MISS for v in variants),
        "sessions": len(sessions),
        "session_turns": sum(len(s.turns) for s in sessions),
        "traffic_requests": requests,
        "traffic_seed": TRAFFIC_SEED,
        "zipf_exponent": ZIPF_EXPONENT,
        "embedder_model": settings.embedder.model,
    }
    results, runs = {}, []
    for threshold in thresholds(configured):
        metrics, tables = run_threshold(threshold, vectors, ordered, traffic, sessions)
        results[threshold] = metrics
        runs.append(
            EvalRun(
                name=f"semantic-{threshold:.2f}",
                params={**params, "threshold": threshold, "configured": threshold == configured},
                metrics=metrics,
                tables=tables,
            )
        )
    # The configured threshold's wrong answers; with none there, the highest threshold's that had some.
    shown = next((run for run in runs if run.params["configured"] and run.tables["false_hits"]), None) or max(
        (run for run in runs if run.tables["false_hits"]), key=lambda run: run.params["threshold"], default=None
    )
    closest = max(
        (row["similarity"] for run in runs for row in run.tables["false_hits"] if row["similarity"] < 1), default=None
    )
    return EvalReport(
        experiment=EXPERIMENT, runs=runs, summary_markdown=summary(params, results, configured, shown, closest)
    )


def pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def summary(
    params: dict,
    results: dict[float, dict[str, float]],
    configured: float,
    shown_run: EvalRun | None,
    closest: float | None,
) -> str:
    rows = []
    for threshold, m in sorted(results.items()):
        rows.append(
            f"| {threshold:.2f}{' (configured)' if threshold == configured else ''} "
            f"| {pct(m['paraphrase_hit_rate'])} | {pct(m['paraphrase_false_hit_rate'])} "
            f"| {pct(m['near_miss_false_hit_rate'])} | {pct(m['traffic_exact_hit_rate'])} "
            f"| {pct(m['traffic_semantic_hit_rate'])} | {m['traffic_false_hits']:.0f} "
            f"| {m['false_hits_total']:.0f} |"
        )
    m = results[configured]
    ceiling = pct(m["traffic_reuse_ceiling"])
    false_hits = shown_run.tables["false_hits"] if shown_run else []
    shown = "".join(
        f'\n- ({row["kind"]}, {row["result"]} {row["similarity"]}) "{row["question"]}" was served '
        f'the answer to "{row["cached_question"]}"'
        for row in false_hits[:FALSE_HITS_SHOWN]
    )
    at = shown_run.params["threshold"] if shown_run else configured
    shown_label = (
        f"Wrong answers at the configured {configured:.2f}:"
        if at == configured
        else f"Wrong answers at the configured {configured:.2f}: none. At {at:.2f}, the highest threshold "
        "that served any:"
    )
    return (
        f"Dataset `{params['dataset']}`: {params['questions']} questions, {params['paraphrases']} hand-written "
        f"paraphrases of them, {params['near_misses']} near-misses (worded like one question, asking what another "
        f"answers), {params['sessions']} sessions ({params['session_turns']} turns); embedder "
        f"{params['embedder_model']}. Requests go through the router's `ResponseCache` with the router's keys "
        "(scope from `router.cache.cache_scope`, exact key the digest of scope and messages), exact cache first. "
        "A false hit serves an answer stored for a question whose gold shares no section with the asker's.\n\n"
        "In order: the questions, then the paraphrases, then the near-misses, each asked once. Traffic: "
        f"{params['traffic_requests']} requests, topics by Zipf-like popularity (exponent {params['zipf_exponent']}, "
        f"seed {params['traffic_seed']}), each in any of its phrasings; a perfect cache would hit {ceiling} of them. "
        "Wrong answers: every false hit of every replay below (questions, paraphrases, near-misses, traffic, "
        "sessions).\n\n"
        "| threshold | paraphrases served their answer | paraphrases served a wrong one | near-misses served a "
        "wrong one | traffic exact hits | traffic semantic hits | traffic false hits | wrong answers |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
        + "\n".join(rows)
        + "\n\n"
        + sessions_text(results, configured)
        + "\n\n"
        + shown_label
        + (shown or " none.")
        + "\n\n"
        + recommendation(results, configured, closest)
    )


def sessions_text(results: dict[float, dict[str, float]], configured: float) -> str:
    other = max(
        m[f"{mode}_followup_other_conversation_hits"] for m in results.values() for mode in ("sessions", "stateless")
    )
    m = results[configured]
    return (
        f"Sessions, with the router's memory (a session id) and stateless (the client resends the conversation): "
        f"at any threshold, {other:.0f} of {m['sessions_followups']:.0f} follow-ups were served an answer stored "
        f"after other earlier turns. At {configured:.2f}, {m['sessions_followups_after_shared_history']:.0f} "
        "follow-ups came after a history an earlier session had had: "
        f"{m['sessions_followup_exact_hits']:.0f} exact hits (the same follow-up), "
        f"{m['sessions_followup_semantic_hits']:.0f} semantic hits, {m['sessions_followup_false_hits']:.0f} wrong "
        f"(stateless: {m['stateless_followup_exact_hits']:.0f}, {m['stateless_followup_semantic_hits']:.0f}, "
        f"{m['stateless_followup_false_hits']:.0f}). With the conversation left out of the scope, "
        f"{m['blind_followup_other_conversation_hits']:.0f} follow-ups would have been served another "
        f"conversation's answer, {m['blind_followup_false_hits']:.0f} of them wrong."
    )


def recommendation(results: dict[float, dict[str, float]], configured: float, closest: float | None) -> str:
    best, c = recommended(results), results[configured]
    now = (
        f"At the configured {configured:.2f} the semantic cache adds {pct(c['traffic_semantic_hit_rate'])} of "
        f"traffic to the exact cache's {pct(c['traffic_exact_hit_rate'])}, and serves a wrong answer to "
        f"{pct(c['near_miss_false_hit_rate'])} of near-misses ({c['false_hits_total']:.0f} wrong answers in all)."
    )
    if best is None:
        return f"No threshold measured served no wrong answer. {now}"
    m = results[best]
    margin = "" if closest is None else f" (the most similar question ever served a wrong answer scored {closest:.3f})"
    return (
        f"**The figures support {best:.2f} as the default**: the lowest threshold at which no replay served a "
        f"wrong answer{margin}. There the semantic cache adds {pct(m['traffic_semantic_hit_rate'])} of traffic to "
        f"the exact cache's {pct(m['traffic_exact_hit_rate'])} and serves {pct(m['paraphrase_hit_rate'])} of "
        f"paraphrases their answer. " + ("" if best == configured else now)
    )
