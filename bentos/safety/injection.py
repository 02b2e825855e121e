"""Prompt injection and jailbreaks: jailguard's MiniLM + MLP classifier, offline, and cheap heuristics.

The classifier scores windows of about 200 words (MiniLM reads 256 tokens at most); a text scores
its most suspicious window. The heuristics are regular expressions for the phrasings attacks share;
each finding says which one matched, and where.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from bentos.safety.minilm_onnx import export_minilm_onnx
from ragyard.contracts.safety import Finding

WINDOW_WORDS = 200
# The classifier is not trained on very short texts: measured here, "help" scores 0.995, "hi" and
# "ok" 0.94, "Say a word about the number 1" 0.975, all above the 0.96 block threshold. Below this
# many words only the heuristics judge (they catch "Ignore previous instructions" on their own).
MIN_CLASSIFIER_WORDS = 8
_WORD = re.compile(r"\S+")

# heuristic name -> (pattern, score). The heuristics matched no benign text of the safety eval
# (precision 1.0), so the specific ones score above the default block threshold (0.96) on their own.
HEURISTICS: dict[str, tuple[re.Pattern, float]] = {
    "ignore_instructions": (
        re.compile(
            r"\b(?:ignore|disregard|forget|override|bypass|skip)\s+(?:all\s+|any\s+|every\s+|the\s+|your\s+|of\s+)*"
            r"(?:previous|prior|above|earlier|preceding|initial|original|system|safety|developer)?\s*"
            r"(?:instructions?|prompts?|rules|directions|guidelines|directives|context|programming|restrictions)\b",
            re.I,
        ),
        0.99,
    ),
    "persona_override": (
        re.compile(
            r"\b(?:do anything now|DAN mode|developer mode (?:enabled|output|on)|jailbr(?:ea|o)k(?:en)?|"
            r"you are (?:now |going to be )?"
            r"(?:DAN|free from|no longer bound|an? (?:unfiltered|uncensored|unrestricted)))",
            re.I,
        ),
        0.98,
    ),
    "system_prompt_extraction": (
        re.compile(
            r"\b(?:reveal|show|print|repeat|output|leak|display|tell me|what (?:is|are|were))\s+(?:me\s+)?"
            r"(?:your|the)\s+(?:entire\s+|full\s+)?(?:system|initial|hidden|original|secret|first)\s+"
            r"(?:prompt|instructions?|message|directives?)",
            re.I,
        ),
        0.98,
    ),
    "restriction_removal": (
        re.compile(
            r"\b(?:without|free of|no|ignore)\s+(?:any\s+)?(?:ethical|moral|content|safety)?\s*"
            r"(?:restrictions|filters|filtering|censorship|limitations|guidelines|boundaries|constraints)\b",
            re.I,
        ),
        0.6,
    ),
    "chat_template_tokens": (
        re.compile(
            r"<\|im_start\|>|<\|system\|>|<\|endoftext\|>|\[/?INST\]|<</?SYS>>|^#{2,}\s*(?:system|instruction)s?\s*:",
            re.I | re.M,
        ),
        0.8,
    ),
    "roleplay_unfiltered": (
        re.compile(
            r"\b(?:pretend|imagine|act as|roleplay as|role-play as)\b[^.\n]{0,60}\b(?:evil|unfiltered|uncensored|"
            r"amoral|unethical|no rules|without rules|anything)\b",
            re.I,
        ),
        0.7,
    ),
}


def windows(words: list[tuple[int, int]], size: int = WINDOW_WORDS) -> list[tuple[int, int]]:
    """(start, end) of consecutive runs of `size` of the text's `words` (their spans) covering it."""
    return [(words[i][0], words[min(i + size, len(words)) - 1][1]) for i in range(0, len(words), size)]


def heuristic_findings(text: str) -> list[Finding]:
    findings = []
    for name, (pattern, score) in HEURISTICS.items():
        if match := pattern.search(text):
            findings.append(
                Finding(
                    category="injection", type=f"heuristic:{name}", start=match.start(), end=match.end(), score=score
                )
            )
    return findings


def combined_score(classifier: float, heuristic: float) -> float:
    """Noisy-OR of the two detectors: a matched pattern raises a borderline classifier score over
    the threshold, and a strong pattern counts on its own, without a second threshold to tune."""
    return 1.0 - (1.0 - classifier) * (1.0 - heuristic)


class InjectionDetector:
    def __init__(self, model_dir: Path):
        export_minilm_onnx(model_dir)
        # jailguard reads the folder once, when it first loads the model: set it before that.
        os.environ["JAILGUARD_MODEL_DIR"] = str(model_dir)
        import jailguard

        self._jailguard = jailguard
        jailguard.score("warm up")

    def classifier_findings(self, text: str) -> list[Finding]:
        words = [m.span() for m in _WORD.finditer(text)]
        if len(words) < MIN_CLASSIFIER_WORDS:
            return []
        spans = windows(words)
        results = self._jailguard.detect_batch([text[start:end] for start, end in spans])
        (start, end), best = max(zip(spans, results, strict=True), key=lambda pair: pair[1].score)
        return [
            Finding(
                category="injection",
                type="classifier:jailguard",
                start=start,
                end=end,
                score=round(float(best.score), 4),
            )
        ]

    def detect(self, text: str, threshold: float = 0.0) -> list[Finding]:
        """The classifier's finding, and each heuristic's with its score combined with the classifier's."""
        classifier = self.classifier_findings(text)
        probability = classifier[0].score if classifier else 0.0
        heuristics = [
            f.model_copy(update={"score": round(combined_score(probability, f.score), 4)})
            for f in heuristic_findings(text)
        ]
        return [f for f in [*classifier, *heuristics] if f.score >= threshold]

    def score(self, text: str) -> float:
        return max((f.score for f in self.detect(text)), default=0.0)
