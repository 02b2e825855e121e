"""Which answers go to a reviewer, and why: one flag per answer (router.events.flag_for)."""

from ragyard.grounding import grounding
from router.events import AnsweredTurn, flag_for
from router.guardrails import Verdict

TURN = AnsweredTurn(
    trace_id="0" * 32,
    question="What is the default limit of attached databases?",
    answer="The default is 125 [1].",
    citations=[{"index": 1, "source": "sqlite"}],
    model="qwen2.5-coder-1.5b",
    route=None,
    key_id="k1",
    index_version="v1",
)
PASSAGES = ["The maximum number of attached databases is 10 by default."]


def test_an_answer_with_a_number_no_passage_holds_is_flagged_for_low_groundedness():
    checked = grounding(TURN.answer, PASSAGES)
    flag = flag_for(TURN, Verdict(), checked, unsupported_at=1)
    assert flag is not None and flag.reason == "low_groundedness"
    assert flag.unsupported == ["125"] and flag.score == 0.0
    assert flag.question == TURN.question and flag.answer == TURN.answer and flag.index_version == "v1"


def test_grounded_answers_and_a_disabled_rule_are_not_flagged():
    assert flag_for(TURN, Verdict(), grounding("It is 10 by default [1].", PASSAGES), unsupported_at=1) is None
    assert flag_for(TURN, Verdict(), grounding(TURN.answer, PASSAGES), unsupported_at=0) is None
    assert flag_for(TURN, Verdict(), grounding(TURN.answer, PASSAGES), unsupported_at=2) is None
    assert flag_for(TURN, Verdict(), None, unsupported_at=1) is None  # a cached answer: nothing checked


def test_a_safety_flag_wins_and_carries_the_unsupported_claims_too():
    for action in ("flag", "review", "block"):
        flag = flag_for(TURN, Verdict(action, ["pii"]), grounding(TURN.answer, PASSAGES), unsupported_at=1)
        assert flag is not None and flag.reason == "output_safety" and flag.action == action
        assert flag.categories == ["pii"] and flag.unsupported == ["125"]
    assert flag_for(TURN, Verdict("redact", ["pii"]), None, unsupported_at=1) is None
