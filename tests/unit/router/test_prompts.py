"""The RAG prompt's pure parts: rendering a template, and the sticky A/B split (the registry: tests/integration)."""

from collections import Counter

import pytest

from router.prompts import RAG_TEMPLATE, choose_alias, render


def test_render_fills_every_variable_once_and_names_missing_ones():
    messages = render(RAG_TEMPLATE, {"context": "[1] uses {{question}} literally", "question": "what?"})
    assert messages[0]["role"] == "system" and "[1] uses {{question}} literally" in messages[0]["content"]
    assert messages[1] == {"role": "user", "content": "what?"}
    with pytest.raises(KeyError, match="context"):
        render(RAG_TEMPLATE, {"question": "q"})


def test_the_ab_split_is_sticky_and_close_to_the_weights():
    weights = {"production": 0.8, "candidate": 0.2}
    users = [f"user-{i}" for i in range(5000)]
    first = [choose_alias(weights, "rag", u) for u in users]
    assert first == [choose_alias(dict(reversed(weights.items())), "rag", u) for u in users]  # order-free
    counts = Counter(first)
    assert counts["candidate"] / len(users) == pytest.approx(0.2, abs=0.02)
    # another prompt's experiment splits the same users independently
    other = [choose_alias(weights, "other", u) for u in users]
    assert sum(a != b for a, b in zip(first, other, strict=True)) > 500
    assert {choose_alias({"production": 1.0, "off": 0.0}, "rag", u) for u in users[:200]} == {"production"}
