"""One protocol for every number an eval tunes: the data is split into a tuning part and a held-out
part by a fixed seed, the number is chosen on the tuning part, and reported on the held-out part with
a bootstrap confidence interval and its baseline beside it.

A split is by group (an id, or ids that must stay together: a question and its paraphrases, a
near-miss and the question it is worded like), decided by a hash of the seed and the group's key, so
it does not change when other groups are added or the data is reordered.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

T = TypeVar("T")
SPLIT_SEED = 20261207
HELD_OUT_SHARE = 0.5
BOOTSTRAP_SAMPLES = 2000


def held_out(key: str, seed: int = SPLIT_SEED, share: float = HELD_OUT_SHARE) -> bool:
    """Whether the group `key` is in the held-out part (a share of `share` of the groups, in expectation)."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def groups(ids: Iterable[str], together: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Each id's group key (the smallest id of its group): ids linked by `together`, directly or not,
    share a group."""
    parent = {i: i for i in ids}

    def root(i: str) -> str:
        parent.setdefault(i, i)  # an id only a link names joins too
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in together:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {i: root(i) for i in parent}


def split(items: Sequence[T], key: Callable[[T], str], seed: int = SPLIT_SEED) -> tuple[list[T], list[T]]:
    """(tuning, held-out) of `items`, by the held-out draw of each item's group key."""
    tuning: list[T] = []
    rest: list[T] = []
    for item in items:
        (rest if held_out(key(item), seed) else tuning).append(item)
    return tuning, rest


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"

    def percent(self) -> str:
        return f"{100 * self.value:.1f}% [{100 * self.low:.1f}, {100 * self.high:.1f}]"


def bootstrap(rows: Sequence[T], statistic: Callable[[Sequence[T]], float], seed: int = SPLIT_SEED) -> Interval:
    """The statistic on `rows` with its 95% percentile bootstrap interval (rows resampled with replacement)."""
    rng = np.random.default_rng(seed)
    values = [statistic([rows[i] for i in rng.integers(0, len(rows), len(rows))]) for _ in range(BOOTSTRAP_SAMPLES)]
    low, high = np.percentile(values, [2.5, 97.5]) if rows else (0.0, 0.0)
    return Interval(statistic(rows), float(low), float(high))
