"""Wire schemas of the safety bento: the one place that defines its HTTP contract; and what the
placeholders of a reversible policy mean (`restore`, `conceal`), for the bento and its callers."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field

Direction = Literal["input", "output"]
Category = Literal["pii", "injection", "toxicity"]
Action = Literal["allow", "flag", "redact", "review", "block"]
# Weakest first: when several categories have findings, the strongest action wins. "review" withholds
# an answer until a person has approved it (output policies only); "block" withholds it for good.
ACTION_ORDER: tuple[Action, ...] = ("allow", "flag", "redact", "review", "block")
WITHHOLDING: tuple[Action, ...] = ("review", "block")


def strongest(actions: list[Action]) -> Action:
    return max(actions, key=ACTION_ORDER.index, default="allow")


# The service answers 413 above the configured byte bound; the schema only refuses empty text.
POLICY_NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"


class CheckRequest(BaseModel):
    text: str = Field(min_length=1, description="The text to check: a user prompt (input) or a model answer (output).")
    direction: Direction = Field(description="input: text going to the model; output: text coming from it.")
    policy: str = Field(
        default="default",
        pattern=POLICY_NAME_PATTERN,
        description="Name of a policy in the service's settings (RAGYARD_SAFETY__POLICIES).",
    )


class Finding(BaseModel):
    category: Category
    type: str = Field(
        description="What was found: an entity type (EMAIL_ADDRESS, PERSON, AWS_ACCESS_KEY...), "
        "an injection detector (classifier, heuristic name) or a toxicity detector."
    )
    start: int = Field(ge=0, description="Character offset in the request text where the finding begins.")
    end: int = Field(ge=0, description="Character offset in the request text where the finding ends (exclusive).")
    score: float = Field(ge=0.0, le=1.0)


class CheckResponse(BaseModel):
    allowed: bool = Field(description="False when the action withholds the text: block, or review.")
    action: Action = Field(
        description="The strongest action the policy takes on the findings: block > review > redact > flag > allow."
    )
    redacted_text: str | None = Field(
        default=None, description="The text with PII replaced; null unless action is redact."
    )
    findings: list[Finding] = Field(default_factory=list)
    latency_ms: float
    placeholders: dict[str, str] = Field(
        default_factory=dict,
        description="placeholder -> original value, when the policy pseudonymizes reversibly; "
        "`restore` puts the originals back into an answer.",
    )


class CheckBatchRequest(BaseModel):
    items: list[CheckRequest] = Field(min_length=1, description="Texts to check; bounded by the service's settings.")


class CheckBatchResponse(BaseModel):
    results: list[CheckResponse]


def _replace_all(text: str, replacements: dict[str, str]) -> str:
    """`text` with every key of `replacements` replaced by its value, longest keys first."""
    if not replacements:
        return text
    pattern = re.compile("|".join(re.escape(k) for k in sorted(replacements, key=len, reverse=True)))
    return pattern.sub(lambda match: replacements[match.group(0)], text)


def restore(text: str, placeholders: dict[str, str]) -> str:
    """`text` with every placeholder of a reversible pseudonymization replaced by its original."""
    return _replace_all(text, placeholders)


def conceal(text: str, placeholders: dict[str, str]) -> str:
    """The inverse of `restore`: every original of `placeholders` in `text` back to its placeholder
    (for what is kept after the answer, such as a cache or a conversation's memory)."""
    return _replace_all(text, {original: placeholder for placeholder, original in placeholders.items()})
