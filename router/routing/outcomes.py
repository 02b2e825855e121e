"""Logged outcomes the learned router trains on: eval results, and scores recorded in Langfuse.

An outcome is (routing features, model that answered, quality in [0, 1]).

- Eval results: each answer of the answer eval (evals/answers.py) with its token F1.
- Langfuse: every score named `score_name` (e.g. user feedback from the router's POST
  /v1/feedback) on a trace whose metadata holds "routing_features" (what the router bento
  records with its route decision). The model is the trace's GENERATION observation's model (the
  one that really answered, after any fallback), else metadata["route"]["model"]. Numeric scores
  are mapped from [low, high] to [0, 1]; boolean scores are 0 or 1; categorical ones are skipped.
  Read through the Langfuse SDK's public API client (`Langfuse().api`), page by page.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from router.routing.features import FEATURE_NAMES
from router.routing.predictor import Outcome

log = logging.getLogger(__name__)

FEEDBACK_SCORE = "user_feedback"  # the score name the router bento's POST /v1/feedback writes


def outcomes_from_eval(records: Iterable) -> list[Outcome]:
    """Outcomes from answer-eval records (anything with id, model, token_f1 and features)."""
    return [Outcome(dict(r.features), r.model, float(r.token_f1), f"eval:{r.id}") for r in records]


def _trace_model(trace) -> str | None:
    for observation in trace.observations or []:
        if observation.type == "GENERATION" and observation.model:
            return observation.model
    route = (trace.metadata or {}).get("route") if isinstance(trace.metadata, dict) else None
    return route.get("model") if isinstance(route, dict) else None


def _quality(score, low: float, high: float) -> float | None:
    if score.data_type == "BOOLEAN":
        return float(bool(score.value))
    if score.data_type == "NUMERIC" and high > low:
        return min(1.0, max(0.0, (float(score.value) - low) / (high - low)))
    return None


def outcomes_from_langfuse(
    api, score_name: str, low: float = 0.0, high: float = 1.0, page_size: int = 100, max_pages: int = 100
) -> list[Outcome]:
    """Outcomes from the scores named `score_name` in Langfuse; `api` is `Langfuse(...).api`.

    Scores on traces without routing features or a model are skipped (counted in the log).
    """
    outcomes, skipped, traces = [], 0, {}
    for page in range(1, max_pages + 1):
        response = api.score.get(name=score_name, page=page, limit=page_size)
        for score in response.data:
            quality = _quality(score, low, high)
            if quality is None:
                skipped += 1
                continue
            if score.trace_id not in traces:
                traces[score.trace_id] = api.trace.get(score.trace_id)
            trace = traces[score.trace_id]
            metadata = trace.metadata if isinstance(trace.metadata, dict) else {}
            features = metadata.get("routing_features")
            model = _trace_model(trace)
            if not isinstance(features, dict) or not model or any(n not in features for n in FEATURE_NAMES):
                skipped += 1
                continue
            outcomes.append(
                Outcome({n: float(features[n]) for n in FEATURE_NAMES}, model, quality, f"langfuse:{score.trace_id}")
            )
        if page >= response.meta.total_pages:
            break
    if skipped:
        log.info(
            "langfuse: skipped %d %r scores without a numeric value, routing features or model", skipped, score_name
        )
    return outcomes


def langfuse_outcomes(settings, score_name: str = FEEDBACK_SCORE) -> list[Outcome]:
    """Outcomes from the Langfuse server in `settings.langfuse`; none when Langfuse is not configured.

    The router's POST /v1/feedback records `user_feedback` scores; a value in [0, 1] is taken as is.
    """
    if not settings.langfuse.enabled:
        return []
    from langfuse import Langfuse

    lf = settings.langfuse
    api = Langfuse(public_key=lf.public_key, secret_key=lf.secret_key, host=lf.host).api
    return outcomes_from_langfuse(api, score_name)
