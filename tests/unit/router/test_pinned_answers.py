"""A reviewer's pinned answer (router/pinned.py, written by the review bento) is what the router's cache
step serves first, for its question and index version only."""

import time

import anyio
import numpy as np

from ragyard.clients.embedder import EmbedderClient
from ragyard.settings import RouterSettings
from router.cache import ResponseCache, cache_scope, exact_key
from router.chat import ChatRequest, Citation, Message, wire_messages
from router.index_version import IndexVersion
from router.pinned import PinnedAnswer, PinnedAnswers
from router.steps.cache import CacheStep
from router.turn import Turn

VERSION = "docs:v1"
SORTING = Citation(1, "howto/sorting.rst", "Sorting", "c1", "d1", 0.8).wire()


class FixedVersion(IndexVersion):
    """The retriever's index version, as read a moment ago (no retriever call)."""

    def __init__(self, value: str):
        super().__init__(retriever=None, ttl_s=3600)  # type: ignore[arg-type]  # never called while fresh
        self.value, self.read_at = value, time.monotonic()


def lookup(step: CacheStep, question: str, model: str = "ragyard/auto") -> Turn:
    request = ChatRequest(model, (Message("user", question),), 64, {}, False, None)
    turn = Turn.begin(request, 30.0, "USD")
    anyio.run(step.lookup, turn, ())
    return turn


def test_the_cache_step_serves_a_pinned_answer_before_the_cache_for_its_question_and_index_version(tmp_path):
    database = tmp_path / "cache.sqlite3"
    cache = ResponseCache(database, ttl_s=3600, max_entries=100, threshold=0.9)
    pinned = PinnedAnswers(database)
    # An unreachable embedder: a pinned hit needs none; a miss skips the semantic cache.
    step = CacheStep(cache, pinned, EmbedderClient("http://127.0.0.1:9"), FixedVersion(VERSION), RouterSettings())
    question = "How do I sort a list in place?"
    # The exact cache holds a generated answer for the very same request.
    request = ChatRequest("ragyard/auto", (Message("user", question),), 64, {}, False, None)
    scope = cache_scope("ragyard/auto", 64, {}, None, [], [], VERSION, ())
    cache.put(
        exact_key(scope, wire_messages(request.messages)),
        scope,
        question,
        np.zeros(3),
        {"text": "generated", "citations": [], "model": "m"},
    )
    assert lookup(step, question).outcome.text == "generated"

    pinned.pin(question, VERSION, PinnedAnswer("Use list.sort().", [SORTING, {"not": "a citation"}], "m", "flag-1"))
    served = lookup(step, "  how do I SORT a list in place? ")  # whitespace and case do not matter
    assert served.outcome.cache == "pinned" and served.from_cache
    assert served.outcome.text == "Use list.sort()."
    assert [c.wire() for c in served.outcome.citations] == [SORTING]  # what is not a citation is left out
    assert "flag-1" in served.outcome.route.reason

    # Another index version, or another question: not this pin.
    other = CacheStep(cache, pinned, EmbedderClient("http://127.0.0.1:9"), FixedVersion("docs:v2"), RouterSettings())
    assert lookup(other, question).outcome.cache != "pinned"
    assert lookup(step, "How do I sort a dict?").outcome.cache != "pinned"
