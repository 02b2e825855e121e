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

The threshold is chosen on a tuning split and reported on a held-out one (`evals.splits`): the
questions are split by a fixed seed, each with its paraphrases and near-misses (a near-miss and the
question it is worded like stay together), sessions by id. On the tuning split every threshold is
replayed and the lowest at which no replay served a wrong answer is chosen; on the held-out split the
chosen threshold is replayed beside the exact cache alone (the baseline), traffic rates with a
bootstrap interval.
"""

from __future__ import annotations

import math
import tempfile
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
from evals.cache_summary import held_out_text, recommended, summary
from evals.harness_types import EvalReport, EvalRun, ParamValue
from evals.retrieval import DEFAULT_DATASET, load_dataset, quick_subset
from evals.splits import SPLIT_SEED, Interval, bootstrap, groups, split
from ragyard.embedding import EmbeddingModel
from ragyard.settings import Settings

EXPERIMENT = "ragyard-cache"
TRAFFIC_REQUESTS, QUICK_TRAFFIC_REQUESTS = 1000, 300
TRAFFIC_SEED, ZIPF_EXPONENT = 20261127, 1.0
EXACT_ONLY = math.inf  # a threshold no similarity reaches: the exact cache alone


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
) -> tuple[dict[str, float], dict[str, list[dict]], list[Served]]:
    """Every replay through its own fresh cache: metrics, detail tables, and what the traffic was served."""
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
    return metrics, tables, requests


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


@dataclass(frozen=True)
class Part:
    """One side of the split: its questions, their variants and the sessions, and the traffic drawn from them."""

    name: str
    questions: list[Asked]
    variants: list[Asked]
    sessions: list[Session]

    @property
    def ordered(self) -> list[Asked]:
        return [*self.questions, *self.variants]  # variants: the paraphrases, then the near-misses

    def traffic(self, requests: int) -> list[Asked]:
        phrasings = defaultdict(list)
        for asked in self.ordered:
            phrasings[asked.of].append(asked)
        return zipf_traffic(phrasings, requests, TRAFFIC_SEED, ZIPF_EXPONENT)


def split_parts(questions: list[Asked], variants: list[Asked], sessions: list[Session]) -> tuple[Part, Part]:
    """(tuning, held-out): questions by a seeded draw per group, a group being a question with those a
    near-miss links it to (so that a near-miss meets the answer it must not be served); each variant
    goes with its question, and with the question it is worded like; sessions by id."""
    group = groups([q.of for q in questions], [(v.of, v.like) for v in variants if v.like])
    qs = split(questions, lambda a: group[a.of])
    vs = split(variants, lambda a: group[a.of])
    ss = split(sessions, lambda session: session.id)
    return Part("tuning", qs[0], vs[0], ss[0]), Part("held-out", qs[1], vs[1], ss[1])


def evaluate(settings: Settings, quick: bool = False, model: EmbeddingModel | None = None) -> EvalReport:
    name, questions, variants, sessions = load_all(quick)
    tuning, held = split_parts(questions, variants, sessions)
    requests = QUICK_TRAFFIC_REQUESTS if quick else TRAFFIC_REQUESTS
    model = model or EmbeddingModel.from_settings(settings)
    texts = sorted({a.question for a in [*questions, *variants]} | {t.question for s in sessions for t in s.turns})
    vectors = dict(zip(texts, model.encode(texts, normalize=True), strict=True))
    configured = settings.router.semantic_threshold
    params: dict[str, ParamValue] = {
        "dataset": name,
        "split_seed": SPLIT_SEED,
        "traffic_requests": requests,
        "traffic_seed": TRAFFIC_SEED,
        "zipf_exponent": ZIPF_EXPONENT,
        "embedder_model": settings.embedder.model,
    }

    def part_params(part: Part) -> dict[str, ParamValue]:
        return {
            **params,
            "split": part.name,
            "questions": len(part.questions),
            "paraphrases": sum(v.kind == PARAPHRASE for v in part.variants),
            "near_misses": sum(v.kind == NEAR_MISS for v in part.variants),
            "sessions": len(part.sessions),
            "session_turns": sum(len(s.turns) for s in part.sessions),
        }

    def replay(part: Part, threshold: float) -> tuple[dict[str, float], dict[str, list[dict]], list[Served]]:
        return run_threshold(threshold, vectors, part.ordered, part.traffic(requests), part.sessions)

    results, runs = {}, []
    for threshold in thresholds(configured):
        metrics, tables, _ = replay(tuning, threshold)
        results[threshold] = metrics
        runs.append(
            EvalRun(
                name=f"tuning-semantic-{threshold:.2f}",
                params={**part_params(tuning), "threshold": threshold, "configured": threshold == configured},
                metrics=metrics,
                tables=tables,
            )
        )
    chosen = recommended(results)
    held_out = {}
    for label, threshold in [("exact-only", EXACT_ONLY), *([(f"semantic-{chosen:.2f}", chosen)] if chosen else [])]:
        metrics, tables, traffic = replay(held, threshold)
        intervals = traffic_intervals(traffic)
        held_out[label] = (metrics, intervals)
        runs.append(
            EvalRun(
                name=f"held-out-{label}",
                params={**part_params(held), "threshold": -1.0 if threshold == EXACT_ONLY else threshold},
                metrics={**metrics, **{f"{k}_low": v.low for k, v in intervals.items()}}
                | {f"{k}_high": v.high for k, v in intervals.items()},
                tables=tables,
            )
        )
    # The configured threshold's wrong answers on the tuning split; with none there, the highest threshold's.
    tuning_runs = [run for run in runs if run.params["split"] == "tuning"]
    shown = next((run for run in tuning_runs if run.params["configured"] and run.tables["false_hits"]), None) or max(
        (run for run in tuning_runs if run.tables["false_hits"]), key=lambda run: run.params["threshold"], default=None
    )
    closest = max(
        (row["similarity"] for run in tuning_runs for row in run.tables["false_hits"] if row["similarity"] < 1),
        default=None,
    )
    text = (
        summary(part_params(tuning), results, configured, shown, closest)
        + "\n\n"
        + held_out_text(part_params(held), chosen, configured, held_out)
    )
    return EvalReport(experiment=EXPERIMENT, runs=runs, summary_markdown=text)


def traffic_intervals(traffic: Sequence[Served]) -> dict[str, Interval]:
    """Semantic hit rate (of requests) and false-hit rate (of hits) of a traffic replay, bootstrapped."""
    return {
        "traffic_semantic_hit_rate": bootstrap(
            traffic, lambda rows: share(sum(s.result == "semantic" for s in rows), len(rows))
        ),
        "traffic_false_hit_rate": bootstrap(
            traffic, lambda rows: share(sum(s.false for s in rows), sum(s.hit for s in rows))
        ),
        "traffic_hit_rate": bootstrap(traffic, lambda rows: share(sum(s.hit for s in rows), len(rows))),
    }
