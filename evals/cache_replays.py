"""Requests replayed through the router's `ResponseCache`, keyed as the router keys them.

`router_keys` takes a request's scope from the router's own `router.cache.cache_scope` (model,
parameters, prompt version, the session's memory, the earlier messages, the index version), and
its exact key as `Flow.lookup_cache` makes it (`router.cache.exact_key`). `Replay.ask` then does what
the router does: the exact cache, then the semantic cache in the scope (the question's vector),
and on a miss stores the answer it "generated". Each request comes back as `Served`: what was hit,
and whether the answer served was wrong (its gold shares no section with the question's) or came
from another conversation.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evals.cache_datasets import Asked, Session
from router.cache import ResponseCache, cache_scope, digest, exact_key
from router.chat import AUTO

# (memory history, messages) -> (scope, exact key)
Keys = Callable[[list[dict], list[dict]], tuple[str, str]]

INDEX_VERSION = "eval-index"
PROMPT = {"name": "ragyard-rag", "version": 1, "alias": "production"}
MAX_TOKENS = 512


def router_keys(history: list[dict], messages: list[dict]) -> tuple[str, str]:
    """Scope and exact key of a `ragyard/auto` request (RAG, no PII), as the router computes them."""
    scope = cache_scope(AUTO, MAX_TOKENS, {}, PROMPT, history, messages[:-1], INDEX_VERSION, ())
    return scope, exact_key(scope, messages)


def history_blind_keys(history: list[dict], messages: list[dict]) -> tuple[str, str]:
    """The router's keys with the conversation left out: what scoping by history prevents."""
    return router_keys([], messages[-1:])


@dataclass(frozen=True)
class Served:
    asked: Asked
    result: str  # "exact" | "semantic" | "miss"
    false: bool  # the answer served is about none of the question's gold sections
    other_conversation: bool  # served from an entry stored after other earlier turns
    reusable: bool  # an earlier request of the same conversation so far had a gold section of this one
    shared_history: bool  # an earlier request came after the same earlier turns
    similarity: float | None = None
    cached_id: str = ""
    cached_question: str = ""

    @property
    def hit(self) -> bool:
        return self.result != "miss"

    def row(self) -> dict:
        return {
            "id": self.asked.id,
            "kind": self.asked.kind,
            "question": self.asked.question,
            "of": self.asked.of,
            "like": self.asked.like,
            "result": self.result,
            "false": self.false,
            "other_conversation": self.other_conversation,
            "similarity": None if self.similarity is None else round(self.similarity, 4),
            "cached_id": self.cached_id,
            "cached_question": self.cached_question,
        }


class Replay:
    """One fresh cache, fed request by request as the router feeds its cache."""

    def __init__(self, path: Path, threshold: float, vectors: Mapping[str, np.ndarray], keys: Keys = router_keys):
        self.cache = ResponseCache(path, ttl_s=1e9, max_entries=10**9, threshold=threshold)
        self.vectors = vectors  # question text -> unit vector
        self.keys = keys
        self.answered: dict[str, set[tuple[str, str]]] = {}  # conversation so far -> gold sections asked after it

    def ask(
        self, asked: Asked, history: list[dict] | None = None, context: list[dict] | None = None
    ) -> tuple[Served, str]:
        """Serve one question after `history` (the session's memory) and `context` (earlier messages
        sent with it); returns what was served and the answer text the client got."""
        history, context = history or [], context or []
        messages = [*context, {"role": "user", "content": asked.question}]
        scope, exact_key = self.keys(history, messages)
        conversation = digest([*history, *context])
        answered = self.answered.setdefault(conversation, set())
        reusable, shared = bool(asked.sections & answered), bool(answered)
        answered |= asked.sections
        vector = self.vectors[asked.question]
        hit = self.cache.exact(exact_key) or self.cache.semantic(scope, vector)
        if hit is None:
            text = f"[answer generated for {asked.id}]"
            self.cache.put(
                exact_key,
                scope,
                asked.question,
                vector,
                {"id": asked.id, "sections": sorted(asked.sections), "text": text, "conversation": conversation},
            )
            return Served(asked, "miss", False, False, reusable, shared), text
        payload = hit.payload
        false = not asked.sections & {tuple(s) for s in payload["sections"]}
        return Served(
            asked,
            hit.kind,
            false,
            payload["conversation"] != conversation,
            reusable,
            shared,
            hit.similarity,
            payload["id"],
            hit.question,
        ), payload["text"]


def replay_sessions(replay: Replay, sessions: list[Session], stateless: bool) -> list[Served]:
    """Each session's turns in order. With memory (a session id), the router keeps the earlier turns
    and the client sends only the new question; stateless, the client sends the whole conversation."""
    served = []
    for session in sessions:
        turns: list[dict] = []
        for turn in session.turns:
            result, text = replay.ask(turn, context=turns) if stateless else replay.ask(turn, history=turns)
            served.append(result)
            turns = [*turns, {"role": "user", "content": turn.question}, {"role": "assistant", "content": text}]
    return served


def zipf_traffic(phrasings: Mapping[str, list[Asked]], requests: int, seed: int, exponent: float = 1.0) -> list[Asked]:
    """`requests` questions: a topic (a retrieval question) drawn with Zipf-like popularity (weight
    1/rank^exponent over the topics in a seeded random order), then one of its phrasings, uniformly."""
    rng = random.Random(seed)
    topics = sorted(phrasings)
    rng.shuffle(topics)
    weights = [1 / rank**exponent for rank in range(1, len(topics) + 1)]
    return [rng.choice(phrasings[topic]) for topic in rng.choices(topics, weights, k=requests)]
