"""Toxicity: alt-profanity-check's linear model, scored per sentence so one slur in a long text counts."""

from __future__ import annotations

import re

from ragyard.contracts.safety import Finding

_SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?]+|\n|$)")


def sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence or line with any letter in it."""
    return [(m.start(), m.end()) for m in _SENTENCE.finditer(text) if any(c.isalpha() for c in m.group())]


class ToxicityDetector:
    def __init__(self) -> None:
        from profanity_check import predict_prob

        self._predict_prob = predict_prob
        self._predict_prob(["warm up"])

    def detect(self, text: str, threshold: float = 0.0) -> list[Finding]:
        spans = sentences(text)
        if not spans:
            return []
        probabilities = self._predict_prob([text[start:end] for start, end in spans])
        return [
            Finding(category="toxicity", type="profanity", start=start, end=end, score=round(float(p), 4))
            for (start, end), p in zip(spans, probabilities, strict=True)
            if p >= threshold
        ]

    def score(self, text: str) -> float:
        return max((f.score for f in self.detect(text)), default=0.0)
