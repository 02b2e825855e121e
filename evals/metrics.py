"""Retrieval metrics over one ranked list, with binary relevance.

`ranked` holds, for each hit in rank order, the index of the gold entry it satisfies (or None).
A gold entry is credited once, at the first hit that satisfies it; later hits for the same gold
entry count as not relevant, so every metric stays within [0, 1] even when a long section was
split into several chunks that all match.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def first_credits(ranked: Sequence[int | None]) -> list[bool]:
    """Per rank: does this hit satisfy a gold entry not credited at an earlier rank?"""
    seen: set[int] = set()
    credits = []
    for gold_index in ranked:
        new = gold_index is not None and gold_index not in seen
        if new and gold_index is not None:  # (mypy narrows on the second test only)
            seen.add(gold_index)
        credits.append(new)
    return credits


def recall_at_k(ranked: Sequence[int | None], gold_count: int, k: int) -> float:
    """Share of the gold entries found in the top k."""
    if gold_count <= 0:
        raise ValueError("a question needs at least one gold entry")
    return sum(first_credits(ranked[:k])) / gold_count


def reciprocal_rank_at_k(ranked: Sequence[int | None], k: int) -> float:
    """1 / rank of the first relevant hit in the top k; 0 if there is none."""
    for rank, gold_index in enumerate(ranked[:k], start=1):
        if gold_index is not None:
            return 1.0 / rank
    return 0.0


def dcg(credits: Sequence[bool]) -> float:
    return sum(1.0 / math.log2(rank + 1) for rank, relevant in enumerate(credits, start=1) if relevant)


def ndcg_at_k(ranked: Sequence[int | None], gold_count: int, k: int) -> float:
    """DCG of the top k over the ideal DCG of min(gold_count, k) relevant hits at the top."""
    if gold_count <= 0:
        raise ValueError("a question needs at least one gold entry")
    ideal = dcg([True] * min(gold_count, k))
    return dcg(first_credits(ranked[:k])) / ideal


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0
