"""The memory bento's extraction parts on their own: the similarity gate on the real MiniLM's vectors
(in-process), the parsing of a model's reply, the prompt, the first-person filter."""

from __future__ import annotations

import pytest

from bentos.memory.extraction import Proposal, parse, prompt, speaks_of_oneself
from bentos.memory.gate import Neighbour, Thresholds, decide
from bentos.memory.rows import MemoryRow, text_digest
from bentos.memory.store import AddOp, DeleteOp, UpdateOp
from ragyard.embedding import EmbeddingModel

GATE = Thresholds(update_similarity=0.4, max_chars=200)


@pytest.fixture(scope="module")
def minilm() -> EmbeddingModel:
    return EmbeddingModel("all-MiniLM-L6-v2")


def embed(model: EmbeddingModel, *texts: str) -> dict[str, list[float]]:
    return {text: vector.tolist() for text, vector in zip(texts, model.encode(list(texts)), strict=True)}


def neighbours(model: EmbeddingModel, turn: str, *memories: str) -> list[Neighbour]:
    vectors = embed(model, turn, *memories)
    return [
        Neighbour(
            MemoryRow(f"m{i}", text, "extraction", 0, 0, 0, 1e12),
            vectors[text],
            sum(a * b for a, b in zip(vectors[turn], vectors[text], strict=True)),
        )
        for i, text in enumerate(memories)
    ]


# ---- the gate -----------------------------------------------------------------------------------------


def test_a_move_replaces_the_old_city_and_an_unrelated_update_becomes_an_add(minilm):
    turn = "I moved to Berlin last month, I'm not in Paris anymore."
    near = neighbours(minilm, turn, "User lives in Paris.", "User has two kids.")
    proposals = [Proposal("update", 0, "User lives in Berlin."), Proposal("update", 1, "User prefers bullet points.")]
    plan, dropped = decide(proposals, embed(minilm, *(p.text for p in proposals)), near, turn, GATE)
    assert isinstance(plan[0], UpdateOp) and plan[0].target == "m0" and plan[0].memory.text == "User lives in Berlin."
    assert plan[0].digest == text_digest("User lives in Paris.")
    # "kids" -> "bullet points" fails the gate: the fact is added, the kids stay.
    assert isinstance(plan[1], AddOp) and plan[1].memory.text == "User prefers bullet points."
    assert "too far" in plan[1].note and not dropped


def test_a_delete_needs_a_memory_near_the_turn(minilm):
    turn = "Please forget my peanut allergy."
    near = neighbours(minilm, turn, "User is allergic to peanuts.", "User is learning Rust.")
    plan, dropped = decide(
        [Proposal("delete", 0, ""), Proposal("delete", 1, ""), Proposal("delete", 7, "")], {}, near, turn, GATE
    )
    assert plan == [DeleteOp("m0", text_digest("User is allergic to peanuts."))]
    assert [d.note.split(":")[0] for d in dropped] == ["delete", "delete"]
    assert "too far from the message" in dropped[0].note and "no memory [7]" in dropped[1].note


def test_invented_placeholders_long_texts_and_empty_texts_are_dropped(minilm):
    turn = "My phone number is <PHONE_NUMBER_3f2a9c1b>."
    proposals = [
        Proposal("add", None, "User's phone number is <PHONE_NUMBER_3f2a9c1b>."),
        Proposal("add", None, "User's email is <EMAIL_ADDRESS_00000000>."),
        Proposal("add", None, "x" * 201),
        Proposal("add", None, ""),
    ]
    plan, dropped = decide(proposals, embed(minilm, proposals[0].text, proposals[1].text), [], turn, GATE)
    assert [op.memory.text for op in plan] == ["User's phone number is <PHONE_NUMBER_3f2a9c1b>."]
    notes = [d.note for d in dropped]
    assert "invented placeholders ['<EMAIL_ADDRESS_00000000>']" in notes[0]
    assert "over 200 characters" in notes[1] and "no text" in notes[2]


def test_an_update_of_an_unknown_memory_is_added_and_one_memory_is_updated_once(minilm):
    turn = "I moved to Oslo."
    near = neighbours(minilm, turn, "User lives in Rome.")
    proposals = [
        Proposal("update", 0, "User lives in Oslo."),
        Proposal("update", 0, "User lives in Norway."),
        Proposal("update", 5, "User likes fjords."),
    ]
    plan, _ = decide(proposals, embed(minilm, *(p.text for p in proposals)), near, turn, GATE)
    assert isinstance(plan[0], UpdateOp)
    assert isinstance(plan[1], AddOp) and "already updated" in plan[1].note
    assert isinstance(plan[2], AddOp) and "no such memory" in plan[2].note


# ---- the model's side --------------------------------------------------------------------------------


def test_a_reply_is_parsed_leniently():
    reply = (
        '{"operations": [{"op": "add", "text": "  User  likes tea. "}, {"op": "update", "id": 0, "text": "x"}, '
        '{"op": "rename"}, "junk", {"op": "delete", "id": "1"}]}'
    )
    assert parse(reply) == [
        Proposal("add", None, "User likes tea."),
        Proposal("update", 0, "x"),
        Proposal("delete", None, ""),
    ]
    assert parse("not json") == [] and parse('{"operations": 3}') == [] and parse("[1]") == []


def test_the_prompt_numbers_the_memories():
    messages = prompt("I moved.", ["User lives in Rome.", "User likes tea."])
    assert (
        messages[1].get("content")
        == "Existing memories: [0] User lives in Rome. [1] User likes tea.\nMessage: I moved."
    )
    assert "(none)" in str(prompt("Hi", [])[1].get("content"))


@pytest.mark.parametrize(
    ("turn", "about_oneself"),
    [
        ("I live in Lisbon.", True),
        ("My dog died.", True),
        ("We adopted a cat.", True),
        ("Please forget the allergy.", True),
        ("I'm a nurse", True),
        ("thanks, bye", False),
        ("lol ok", False),
        ("What's the capital of Australia?", False),
    ],
)
def test_the_first_person_filter(turn, about_oneself):
    assert speaks_of_oneself(turn) is about_oneself
