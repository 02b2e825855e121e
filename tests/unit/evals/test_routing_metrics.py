"""RouteLLM's PGR, APGR and CPT, and the answer metrics (token F1, groundedness, citations), by hand."""

from __future__ import annotations

import math

import pytest

from evals.answer_metrics import citation_score, groundedness, sentences, token_f1
from evals.router import is_test
from evals.routing_metrics import apgr, cpt, pgr, pgr_curve


def test_pgr_is_the_share_of_the_gap_recovered():
    assert pgr(0.5, weak=0.2, strong=0.8) == pytest.approx(0.5)
    assert pgr(0.2, 0.2, 0.8) == 0.0 and pgr(0.8, 0.2, 0.8) == 1.0
    assert pgr(0.9, 0.2, 0.8) == pytest.approx(7 / 6)  # a router can beat the strong model
    assert math.isnan(pgr(0.5, 0.6, 0.6))  # no gap


def test_random_routing_is_the_diagonal():
    diagonal = [(p / 10, p / 10) for p in range(11)]
    assert apgr(diagonal) == pytest.approx(0.5)
    assert cpt(diagonal, 0.5) == pytest.approx(0.5) and cpt(diagonal, 0.8) == pytest.approx(0.8)
    assert apgr([]) == pytest.approx(0.5)  # the anchors alone: cheapest (0, 0) and strongest (1, 1)


def test_apgr_and_cpt_of_a_good_router_by_hand():
    # 80% of the gap at 20% strong calls: area = 0.2*0.8/2 + 0.8*(0.8+1)/2 = 0.08 + 0.72
    points = [(0.2, 0.8)]
    assert apgr(points) == pytest.approx(0.80)
    assert cpt(points, 0.5) == pytest.approx(0.125)  # 0.5 / 0.8 * 0.2
    assert cpt(points, 0.8) == pytest.approx(0.2)
    assert cpt(points, 0.9) == pytest.approx(0.6)  # halfway from 0.8 to 1.0 between 0.2 and 1.0


def test_curve_keeps_the_best_point_per_share_and_never_decreases():
    curve = pgr_curve([(0.5, 0.4), (0.5, 0.6), (0.7, 0.3), (0.3, math.nan)])
    assert curve == [(0.0, 0.0), (0.5, 0.6), (0.7, 0.6), (1.0, 1.0)]


def test_split_is_stable_and_about_half():
    ids = [f"q{i}" for i in range(400)]
    assert [is_test(i) for i in ids] == [is_test(i) for i in ids]
    assert 160 < sum(map(is_test, ids)) < 240


def test_token_f1_by_hand():
    # prediction tokens: use os path join (4); reference: os path join joins paths (5); common 3
    assert token_f1("Use os.path.join!", "os.path.join joins paths") == pytest.approx(
        2 * (3 / 4) * (3 / 5) / (3 / 4 + 3 / 5)
    )
    assert token_f1("The answer", "an answer") == 1.0  # articles and case do not count
    assert token_f1("", "") == 1.0 and token_f1("x", "") == 0.0 and token_f1("foo", "bar") == 0.0


CHUNKS = [
    "os.path.join(path, *paths) joins one or more path components intelligently.",
    "json.dumps serializes obj to a JSON formatted str.",
]


def test_groundedness_by_hand():
    answer = (
        "Use os.path.join to join path components [1]. "
        "It was invented by Guido on a Tuesday.\n"
        "json.dumps serializes an object."
    )
    assert sentences(answer) == [
        "Use os.path.join to join path components .",
        "It was invented by Guido on a Tuesday.",
        "json.dumps serializes an object.",
    ]
    # sentence 1: {use, os.path.join, os, path, join, components}: 5/6 in chunk 1 -> supported
    # sentence 2: {invented, guido, tuesday, ...}: none -> not; sentence 3: {json.dumps, json, dumps,
    # serializes, object}: 4/5 in chunk 2 -> supported
    assert groundedness(answer, CHUNKS) == pytest.approx(2 / 3)
    assert groundedness(answer, CHUNKS, threshold=0.9) == 0.0
    assert groundedness("", CHUNKS) == 0.0 and groundedness(answer, []) == 0.0


def test_citation_accuracy_by_hand():
    gold = {1}  # context chunk index 1 ([2]) is gold
    score = citation_score("See [2] and [1], again [2], and [7].", 3, lambda i: i in gold)
    assert (score.cited, score.valid, score.correct) == (3, 2, 1)
    assert score.precision == pytest.approx(1 / 3)
    assert citation_score("no citations", 3, lambda i: True).precision is None


def test_split_is_independent_of_the_answer_sample_order():
    from evals.answers import QAItem, sample_order

    first = sample_order([QAItem(f"q{i}", "q", "a", ()) for i in range(400)])[:40]
    assert 10 < sum(is_test(item.id) for item in first) < 30
