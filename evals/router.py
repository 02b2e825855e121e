"""Router eval: each routing policy's quality-cost curve over the QA set, against random routing.

The answers come from the answer eval (the same cache, so nothing is generated twice): every
question answered by a weak (cheap) and a strong model. The questions are split by a hash of
their id into a training part, on which the quality predictor is fitted (one ridge regressor per model
over the routing features, target: token F1), and a held-out part, on which every policy routes each
question (the real policy classes, on a catalog priced as the LLM bento prices self-hosted models:
machine cost over prefill and decode speeds, measured in this run for every model back to back, since
cached answers were timed under other loads) and is scored with the answer that model gave; every
answer's cost is repriced from its usage at those prices. threshold is swept over its threshold, learned
over its cost weight; cheapest and strongest are the two end points; random routing is the straight line
between them (its expected quality at strong-call share p is linear in p).

Logged as one EvalReport: a run per policy with PGR at its default setting, APGR, CPT(50%) and
CPT(80%) and the curve as a table; the predictor is then refitted on all questions and registered
in the MLflow model registry as `router.routing_model_name` with alias `routing_model_alias`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import statistics
from dataclasses import dataclass
from pathlib import Path

from evals.answers import DEFAULT_DATASET, MAX_TOKENS, AnswerSet, collect_answers
from evals.generation import generator_for, measured_prices
from evals.harness_types import EvalReport, EvalRun
from evals.routing_metrics import apgr, cpt, pgr
from ragyard.settings import Settings
from router.routing.base import ModelCard, RouteRequest, RoutingPolicy
from router.routing.outcomes import langfuse_outcomes, outcomes_from_eval
from router.routing.policies import Learned, Threshold, build_policy, estimated_cost
from router.routing.predictor import QualityPredictor
from router.routing.predictor_registry import document_sha256, register_predictor

EXPERIMENT = "ragyard-router"
TEST_SHARE = 0.5


def is_test(item_id: str, share: float = TEST_SHARE) -> bool:
    """A stable split: the same question is always on the same side. Salted, so that it is
    independent of the answer eval's sample order (also a hash of the id)."""
    return int(hashlib.sha256(f"router-split:{item_id}".encode()).hexdigest()[:8], 16) / 16**8 < share


def priced_catalog(answers: AnswerSet, settings: Settings, prices: dict[str, tuple[float, float]]) -> list[ModelCard]:
    """ModelCards at `prices` ((input, output) per 1k tokens, `measured_prices`), with the
    catalog's quality priors."""
    cards = []
    for model in answers.models:
        input_per_1k, output_per_1k = prices[model]
        entry = settings.llm.model_named(model)
        cards.append(
            ModelCard(
                model,
                entry.context_length if entry else 4096,
                input_per_1k,
                output_per_1k,
                entry.quality if entry else None,
            )
        )
    return cards


def repriced(answers: AnswerSet, catalog: list[ModelCard]) -> AnswerSet:
    """The answers with every cost from the catalog's prices and the answer's usage."""
    cards = {card.name: card for card in catalog}
    records = [
        dataclasses.replace(r, cost=cards[r.model].cost(r.prompt_tokens, r.completion_tokens)) for r in answers.records
    ]
    return dataclasses.replace(answers, records=records)


@dataclass(frozen=True)
class Point:
    policy: str
    setting: float | None
    strong_share: float
    quality: float
    cost_per_answer: float
    pgr: float


def route_all(policy: RoutingPolicy, answers: AnswerSet, items: list, catalog: list[ModelCard]) -> list[str]:
    models = []
    for item in items:
        hits = answers.contexts[answers.items.index(item)]
        request = RouteRequest(item.question, ({"role": "user", "content": item.question},), tuple(hits), MAX_TOKENS)
        models.append(policy.choose(request, catalog).model)
    return models


def point(
    name: str,
    setting: float | None,
    chosen: list[str],
    answers: AnswerSet,
    items: list,
    weak: str,
    strong: str,
    weak_q: float,
    strong_q: float,
) -> Point:
    records = [answers.record(item.id, model) for item, model in zip(items, chosen, strict=True)]
    quality = statistics.fmean(r.token_f1 for r in records)
    return Point(
        name,
        setting,
        sum(m == strong for m in chosen) / len(chosen),
        quality,
        statistics.fmean(r.cost for r in records),
        pgr(quality, weak_q, strong_q),
    )


def evaluate_router(
    answers: AnswerSet, settings: Settings, prices: dict[str, tuple[float, float]], register: bool = True
) -> EvalReport:
    catalog = priced_catalog(answers, settings, prices)
    answers = repriced(answers, catalog)
    if len(catalog) < 2:
        raise ValueError("the router eval needs answers from at least two models")
    sample = RouteRequest("", (), (), MAX_TOKENS)
    weak = min(catalog, key=lambda c: estimated_cost(c, sample)).name
    strong = max(catalog, key=lambda c: estimated_cost(c, sample)).name
    pair = [c for c in catalog if c.name in (weak, strong)]
    by_name = {c.name: c for c in pair}
    train = [i for i in answers.items if not is_test(i.id)]
    test = [i for i in answers.items if is_test(i.id)]
    if len(train) < 5 or len(test) < 5:
        raise ValueError(f"too few questions to split ({len(train)} train, {len(test)} test)")
    train_ids = {i.id for i in train}
    predictor = QualityPredictor.fit(outcomes_from_eval(r for r in answers.records if r.id in train_ids))

    def mean_f1(model: str) -> float:
        return statistics.fmean(answers.record(i.id, model).token_f1 for i in test)

    weak_q, strong_q = mean_f1(weak), mean_f1(strong)

    def curve_point(name: str, setting: float | None, policy: RoutingPolicy) -> Point:
        return point(
            name, setting, route_all(policy, answers, test, pair), answers, test, weak, strong, weak_q, strong_q
        )

    ends = [
        curve_point("cheapest", None, build_policy("cheapest", settings)),
        curve_point("strongest", None, build_policy("strongest", settings)),
    ]
    # Sweep each policy's knob over the values where one of its decisions flips: for threshold, the
    # weak model's predicted qualities; for learned, the cost weights that make a question's
    # predicted gain from the strong model equal its extra relative cost.
    features = [answers.record(i.id, weak).features for i in test]
    weak_pred, strong_pred = predictor.predict(features, weak), predictor.predict(features, strong)
    relative = estimated_cost(by_name[weak], sample) / estimated_cost(by_name[strong], sample)
    thresholds = sorted({round(float(q), 4) for q in weak_pred})
    weights = (
        sorted({round(float(g) / (1 - relative), 4) for g in strong_pred - weak_pred if g > 0}) if relative < 1 else []
    )
    sweeps = {
        "threshold": [curve_point("threshold", t, Threshold(predictor, t)) for t in [0.0, *thresholds, 1.01]],
        "learned": [
            curve_point("learned", w, Learned(predictor, w))
            for w in [0.0, *(w + 1e-4 for w in weights), (weights[-1] if weights else 0.0) + 1.0]
        ],
    }
    defaults = {"threshold": settings.router.routing_threshold, "learned": settings.router.routing_cost_weight}
    runs, lines = (
        [],
        [
            f"Router eval: {answers.dataset}, weak {weak} vs strong {strong}, {len(train)} questions to train the "
            f"predictor, {len(test)} held out; quality = token F1 (weak {weak_q:.3f}, strong {strong_q:.3f}).",
            "",
            "| policy | APGR | CPT(50%) | CPT(80%) | PGR at default | strong share at default | setting at PGR 80% |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
            "| random (expected) | 0.500 | 50.0% | 80.0% | - | - | - |",
        ],
    )
    for name, points in sweeps.items():
        curve = [(p.strong_share, p.pgr) for p in points]
        default = Threshold(predictor, defaults[name]) if name == "threshold" else Learned(predictor, defaults[name])
        at_default = curve_point(name, defaults[name], default)
        metrics = {
            "apgr": apgr(curve),
            "cpt_50": cpt(curve, 0.5),
            "cpt_80": cpt(curve, 0.8),
            "pgr_default": at_default.pgr,
            "strong_share_default": at_default.strong_share,
            "quality_default": at_default.quality,
            "cost_per_answer_default": at_default.cost_per_answer,
            "weak_quality": weak_q,
            "strong_quality": strong_q,
        }
        # The cheapest measured setting that recovers 80% of the gap: a calibrated default to configure.
        good = [p for p in points if p.setting is not None and p.pgr >= 0.8]
        if good:
            setting = min(good, key=lambda p: (p.strong_share, -p.pgr)).setting
            assert setting is not None
            metrics["setting_at_pgr_80"] = setting
        runs.append(
            EvalRun(
                name=f"router-{name}",
                params={
                    "policy": name,
                    "weak_model": weak,
                    "strong_model": strong,
                    "default_setting": defaults[name],
                    "train_questions": len(train),
                    "test_questions": len(test),
                    "dataset": answers.dataset,
                    "quality_metric": "token_f1",
                    "prompt_version": answers.prompt_version,
                    "generation_backend": answers.backend,
                },
                metrics=metrics,
                tables={"curve": [vars(p) for p in ends + points]},
            )
        )
        lines.append(
            f"| {name} | {metrics['apgr']:.3f} | {100 * metrics['cpt_50']:.1f}% | "
            f"{100 * metrics['cpt_80']:.1f}% | {at_default.pgr:.3f} | {100 * at_default.strong_share:.0f}% | "
            f"{metrics.get('setting_at_pgr_80', '-')} |"
        )
    lines += [
        "",
        "Quality-cost points on the held-out questions (each sweep near 25/50/75% strong calls; the "
        "whole curves are the runs' `curve` tables):",
        "",
        "| policy | setting | strong share | token F1 | cost/answer |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    near = [
        min(points, key=lambda p: abs(p.strong_share - share))
        for points in sweeps.values()
        for share in (0.25, 0.5, 0.75)
    ]
    for p in ends + list(dict.fromkeys(near)):
        shown = "-" if p.setting is None else f"{p.setting:g}"
        lines.append(
            f"| {p.policy} | {shown} | {100 * p.strong_share:.0f}% | {p.quality:.3f} | {p.cost_per_answer:.2e} |"
        )
    if register:
        # The registered predictor learns from every question, and from user feedback when Langfuse is on.
        feedback = langfuse_outcomes(settings)
        full = QualityPredictor.fit([*outcomes_from_eval(answers.records), *feedback])
        version = register_predictor(
            full,
            settings.mlflow.url,
            settings.router.routing_model_name,
            settings.router.routing_model_alias,
            description=f"ridge per model on routing features; token F1 on {answers.dataset} "
            f"({len(answers.items)} questions, models {', '.join(answers.models)}) and "
            f"{len(feedback)} Langfuse feedback scores",
        )
        lines += [
            "",
            f"Registered `models:/{settings.router.routing_model_name}@"
            f"{settings.router.routing_model_alias}` (version {version}, SHA-256 `{document_sha256(full)}`), "
            "fitted on all questions.",
        ]
    return EvalReport(EXPERIMENT, runs, "\n".join(lines))


def evaluate(settings: Settings, quick: bool = False, dataset: Path = DEFAULT_DATASET) -> EvalReport:
    """The harness entry point: every model of `evals.answer_models` on `evals.answer_limit`
    questions (0: all), the predictor registered. Quick: 12 questions, nothing registered."""
    limit = 12 if quick else settings.evals.answer_limit or None
    generator = generator_for(settings)
    answers = collect_answers(settings, dataset=dataset, limit=limit, generator=generator)
    # A prompt of RAG size (the first question's passages) to time prefill on.
    passages = "\n\n".join(hit.get("text", "") for hit in answers.contexts[0])
    prices = measured_prices(
        generator, settings, answers.models, [{"role": "user", "content": f"Summarize these passages:\n\n{passages}"}]
    )
    return evaluate_router(answers, settings, register=not quick, prices=prices)
