"""Safety pieces that need no server: the guard's cut point, restore, policy settings, eval metrics."""

import pytest
from pydantic import ValidationError

from evals.safety import binary_metrics, f_beta, threshold_at_fpr
from ragyard.contracts.safety import Finding, conceal, restore
from ragyard.settings import CategoryPolicy, DirectionPolicy, SafetyPolicy, SafetySettings
from router.output_guard import safe_cut


def pii(start: int, end: int) -> Finding:
    return Finding(category="pii", type="EMAIL_ADDRESS", start=start, end=end, score=1.0)


def test_safe_cut_backs_off_to_whitespace_and_out_of_findings():
    text = "mail me at someone@example.com today please"
    assert safe_cut(text, [], 14, force=False) == 11  # inside "someone...": back to after "at "
    at = text.index("someone")
    finding = pii(at, at + len("someone@example.com"))
    assert safe_cut(text, [finding], finding.end - 3, force=False) == at
    # A span that spans whitespace (a card number) is never split either.
    card = "pay 4111 1111 1111 1111 now"
    assert safe_cut(card, [Finding(category="pii", type="CREDIT_CARD", start=4, end=23, score=1.0)], 14, False) == 4
    # Findings of other categories are whole-text judgements: they do not pin the cut.
    tox = Finding(category="toxicity", type="profanity", start=0, end=len(text), score=0.9)
    assert safe_cut(text, [tox], 14, force=False) == 11
    assert safe_cut("nowhitespaceatall", [], 10, force=False) == 0
    assert safe_cut("nowhitespaceatall", [], 10, force=True) == 10


def test_restore_replaces_longest_placeholders_first_and_conceal_undoes_it():
    placeholders = {"<PERSON_1>": "Ann", "<PERSON_10>": "Ann Lee"}
    assert restore("<PERSON_10> met <PERSON_1>.", placeholders) == "Ann Lee met Ann."
    assert conceal("Ann Lee met Ann.", placeholders) == "<PERSON_10> met <PERSON_1>."
    assert restore("nothing here", {}) == conceal("nothing here", {}) == "nothing here"


def test_findings_inside_our_own_placeholders_are_dropped_or_trimmed():
    from bentos.safety.pii import outside_placeholders
    from bentos.safety.redaction import placeholder_pattern

    ours = placeholder_pattern(["EMAIL_ADDRESS", "PERSON"])
    text = "Mail <EMAIL_ADDRESS_69dd69c8> or Dana Smith<PERSON_0a1b2c3d> now"
    inside = Finding(category="pii", type="PERSON", start=6, end=29, score=0.85)  # "EMAIL_ADDRESS_69dd69c8>"
    over_edge = Finding(category="pii", type="PERSON", start=text.index("Dana"), end=text.index(" now"), score=0.85)
    kept = outside_placeholders(text, [inside, over_edge], ours)
    assert [text[f.start : f.end] for f in kept] == ["Dana Smith"]
    enclosing = Finding(category="pii", type="PERSON", start=0, end=len(text), score=0.5)
    assert outside_placeholders(text, [enclosing], ours) == [enclosing]
    # Upper-case text in angle brackets that is no placeholder of ours is not exempt.
    lookalike = "Ask <JOHN_SMITH> today"
    name = Finding(category="pii", type="PERSON", start=5, end=15, score=0.85)
    assert outside_placeholders(lookalike, [name], ours) == [name]


def test_policy_settings_refuse_redacting_whole_text_categories_and_a_missing_default():
    with pytest.raises(ValidationError, match="redact applies to pii only"):
        DirectionPolicy(injection=CategoryPolicy(action="redact"))
    with pytest.raises(ValidationError, match="default"):
        SafetySettings(policies={"strict": {}})
    with pytest.raises(ValidationError):
        CategoryPolicy(action="block", threshold=1.5)
    with pytest.raises(ValidationError, match="input.toxicity.action: review holds answers"):
        SafetyPolicy(input=DirectionPolicy(toxicity=CategoryPolicy(action="review")))
    assert (
        SafetyPolicy(output=DirectionPolicy(toxicity=CategoryPolicy(action="review"))).output.toxicity.action
        == "review"
    )


def test_the_strongest_action_wins_and_review_withholds_below_block():
    from bentos.safety.checker import decide
    from router.guardrails import HELD, WITHHELD, Verdict, withheld_text

    rules = DirectionPolicy(pii=CategoryPolicy(action="redact"), toxicity=CategoryPolicy(action="review"))
    pii = Finding(category="pii", type="EMAIL_ADDRESS", start=0, end=3, score=1.0)
    toxic = Finding(category="toxicity", type="profanity", start=0, end=3, score=1.0)
    assert decide(rules, []) == "allow"
    assert decide(rules, [pii]) == "redact"
    assert decide(rules, [pii, toxic]) == decide(rules, [toxic, pii]) == "review"
    verdict = Verdict("review", ["toxicity"])
    verdict.merge(Verdict("redact", ["pii"]))
    assert verdict.action == "review" and verdict.categories == ["pii", "toxicity"]
    verdict.merge(Verdict("block", ["injection"]))
    assert verdict.action == "block"
    assert withheld_text("review") == HELD and withheld_text("block") == WITHHELD != HELD


def test_policies_come_from_the_environment_as_json(monkeypatch):
    from ragyard.settings import Settings

    monkeypatch.setenv(
        "RAGYARD_SAFETY__POLICIES", '{"default": {"input": {"pii": {"action": "block", "threshold": 0.7}}}}'
    )
    policy = Settings().safety.policies["default"]
    assert policy.input.pii.action == "block" and policy.input.pii.threshold == 0.7
    assert policy.input.injection.action == "block"  # unspecified rules keep their defaults


def test_threshold_at_one_percent_fpr_and_metrics():
    benign = [i / 200 for i in range(200)]  # 0.0 .. 0.995
    attack = [0.9, 0.97, 0.995, 0.999, 1.0]
    threshold = threshold_at_fpr(attack, benign, 0.01)
    assert sum(s >= threshold for s in benign) <= 2 and threshold == 0.99
    metrics = binary_metrics(attack, benign, threshold)
    assert metrics["recall"] == 0.6 and metrics["fpr"] == 0.01
    assert metrics["precision"] == pytest.approx(3 / 5)
    assert threshold_at_fpr([0.5], [1.0], 0.01) > 1.0  # nothing separates: nothing is flagged
    assert f_beta(1.0, 0.5, 2) == pytest.approx(5 * 0.5 / (4 + 0.5))


def test_luhn_check_and_the_injection_score_combination():
    from bentos.safety.injection import combined_score
    from bentos.safety.recognizers import luhn_valid

    assert luhn_valid("4111111111111111") and luhn_valid("378282246310005")
    assert not luhn_valid("4111111111111112")
    assert combined_score(0.5, 0.0) == 0.5 and combined_score(0.0, 0.95) == 0.95
    assert combined_score(0.8, 0.9) == pytest.approx(0.98)  # a pattern lifts a borderline classifier score
