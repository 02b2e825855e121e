"""RouteLLM's router metrics over a quality-cost curve.

A router between a weak and a strong model is summarised by points (strong-call share, quality).
- PGR (performance gap recovered) of a point: (quality - weak) / (strong - weak).
- APGR: the area under PGR as a function of the strong-call share, over [0, 1]. The curve is the
  router's points joined linearly, anchored at (0, 0) and (1, 1) (always calling the weak or the
  strong model), keeping at each share the best PGR the router reaches there.
- CPT(x): the smallest strong-call share at which the curve reaches PGR x.
Random routing (the strong model with probability p) has expected PGR p at share p: APGR 0.5,
CPT(x) = x. A router is better than random where its curve lies above the diagonal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise


def pgr(quality: float, weak: float, strong: float) -> float:
    if strong <= weak:
        return math.nan  # no gap to recover: the "strong" model is not better on this data
    return (quality - weak) / (strong - weak)


def pgr_curve(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """(share, PGR) points sorted by share, anchored at (0, 0) and (1, 1), best PGR per share,
    and made non-decreasing: a router can always spend more on strong calls at random."""
    best: dict[float, float] = {0.0: 0.0, 1.0: 1.0}
    for share, value in points:
        if not math.isnan(value):
            best[share] = max(best.get(share, -math.inf), value)
    curve, running = [], -math.inf
    for share in sorted(best):
        running = max(running, best[share])
        curve.append((share, running))
    return curve


def apgr(points: Sequence[tuple[float, float]]) -> float:
    """Area under the (share, PGR) curve over [0, 1], trapezoids between points."""
    curve = pgr_curve(points)
    return sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in pairwise(curve))


def cpt(points: Sequence[tuple[float, float]], target: float) -> float:
    """The smallest strong-call share where the curve reaches PGR `target` (interpolated linearly)."""
    curve = pgr_curve(points)
    if curve[0][1] >= target:
        return curve[0][0]
    for (x0, y0), (x1, y1) in pairwise(curve):
        if y1 >= target:
            return x0 + (x1 - x0) * (target - y0) / (y1 - y0)
    return 1.0
