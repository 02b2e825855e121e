"""Features of a request and its retrieval context that a quality predictor learns from.

Every feature is computed from `RouteRequest` alone (no model call), so the router pays nothing
but a few string operations for it. The same function serves training (eval rows, Langfuse
traces that recorded it) and routing, so the two never drift apart.
"""

from __future__ import annotations

import re

from router.routing.base import RouteRequest

FEATURE_NAMES = (
    "question_tokens",  # words in the question
    "context_hits",  # retrieved chunks in the prompt
    "context_chars",  # their total length, in thousands of characters
    "top_score",  # retrieval score of the best hit
    "mean_score",  # mean score of the hits
    "score_gap",  # best minus second-best score: a confident retrieval stands out
    "question_overlap",  # share of the question's content words found in the context
    "top_overlap",  # ... found in the best hit alone
)

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*|\d+")
# Words too common to say whether the context is about the question.
STOPWORDS = frozenset(
    "a an and are as at be by can do does for from how i if in is it its of on or should the this to "
    "was what when where which who why will with you your my me we".split()
)


def words(text: str) -> list[str]:
    """Lower-cased words; a dotted name counts whole and by parts ("os.path" -> os.path, os, path)."""
    out = []
    for word in _WORD.findall(text):
        word = word.lower().rstrip(".")
        out.append(word)
        if "." in word:
            out.extend(part for part in word.split(".") if part)
    return out


def content_words(text: str) -> set[str]:
    return {w for w in words(text) if w not in STOPWORDS}


def overlap(question_words: set[str], text: str) -> float:
    """Share of `question_words` that occur in `text` (0 when the question has none)."""
    if not question_words:
        return 0.0
    return len(question_words & set(words(text))) / len(question_words)


def routing_features(request: RouteRequest) -> dict[str, float]:
    """The feature vector of `request`, keyed by FEATURE_NAMES."""
    hits = request.context
    scores = sorted((float(h.get("score") or 0.0) for h in hits), reverse=True)
    texts = [str(h.get("text") or "") for h in hits]
    question_words = content_words(request.question)
    return {
        "question_tokens": float(len(words(request.question))),
        "context_hits": float(len(hits)),
        "context_chars": sum(len(t) for t in texts) / 1000.0,
        "top_score": scores[0] if scores else 0.0,
        "mean_score": sum(scores) / len(scores) if scores else 0.0,
        "score_gap": scores[0] - scores[1] if len(scores) > 1 else (scores[0] if scores else 0.0),
        "question_overlap": overlap(question_words, " ".join(texts)),
        "top_overlap": overlap(question_words, texts[0]) if texts else 0.0,
    }
