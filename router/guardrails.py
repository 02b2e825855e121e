"""Input and output safety through the safety bento (its client and streaming guard).

Input: every user message of the request is checked in one batch; "block" refuses the request,
"redact" replaces the message by its redacted text (so retrieval, the model, caches, memory and
traces only see that), "flag" lets it pass and is recorded. Output: "review" withholds the answer
until a reviewer approves it (the review bento pins it for the question, and the cache serves it
next time); "block" withholds it. A whole answer is checked once;
a stream goes through the `OutputGuard`, which holds back a short tail so that PII
split across tokens is still caught. Placeholders of a pseudonymizing policy are restored in the
answer. The safety bento unreachable means a 503 (fail closed), unless safety is switched off.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from ragyard.clients.safety import SafetyClient
from ragyard.contracts.safety import WITHHOLDING, Action, CheckRequest, CheckResponse, restore, strongest
from router.chat import Message
from router.output_guard import OutputGuard

WITHHELD = "[The answer was withheld by the safety policy.]"
HELD = "[The answer is held for review by a person. Ask again once it has been approved.]"


def withheld_text(action: str) -> str:
    """What the client gets instead of an answer the policy withholds."""
    return HELD if action == "review" else WITHHELD


class InputBlocked(Exception):
    def __init__(self, categories: list[str]):
        super().__init__(", ".join(categories))
        self.categories = categories


@dataclass
class Verdict:
    action: Action = "allow"  # the strongest action taken: allow | flag | redact | review | block
    categories: list[str] = field(default_factory=list)
    placeholders: dict[str, str] = field(default_factory=dict)

    def add(self, response: CheckResponse) -> None:
        self.merge(Verdict(response.action, [f.category for f in response.findings], response.placeholders))

    def merge(self, other: Verdict) -> None:
        self.action = strongest([self.action, other.action])
        self.categories = sorted({*self.categories, *other.categories})
        self.placeholders.update(other.placeholders)

    def attributes(self) -> dict:
        """For the trace: what was found, never the text."""
        return {"action": self.action, "categories": self.categories}


class Guardrails:
    def __init__(self, client: SafetyClient, policy: str):
        self.client = client
        self.policy = policy

    async def check_input(self, messages: Sequence[Message]) -> tuple[tuple[Message, ...], Verdict]:
        """The messages as the model may see them, and the verdict; raises InputBlocked."""
        users = [i for i, m in enumerate(messages) if m.role == "user" and m.content.strip()]
        verdict = Verdict()
        if not users:
            return tuple(messages), verdict
        responses = await self.client.check_batch(
            [CheckRequest(text=messages[i].content, direction="input", policy=self.policy) for i in users]
        )
        checked = list(messages)
        for i, response in zip(users, responses, strict=True):
            verdict.add(response)
            if response.action == "redact" and response.redacted_text is not None:
                checked[i] = replace(messages[i], content=response.redacted_text)
        if verdict.action == "block":
            raise InputBlocked(verdict.categories)
        return tuple(checked), verdict

    async def check_output(self, text: str, placeholders: dict[str, str]) -> tuple[str, Verdict]:
        """The answer as the client may see it (withheld when blocked), and the verdict."""
        verdict = Verdict()
        if not text.strip():
            return text, verdict
        response = await self.client.check(text, "output", self.policy)
        verdict.add(response)
        if response.action in WITHHOLDING:
            return withheld_text(response.action), verdict
        if response.action == "redact" and response.redacted_text is not None:
            text = response.redacted_text
        return restore(text, placeholders), verdict

    def stream_guard(self, placeholders: dict[str, str], verdict: Verdict) -> OutputGuard:
        """A guard for one streamed answer; every window's check is added to `verdict`."""

        async def check(text: str) -> CheckResponse:
            response = await self.client.check(text, "output", self.policy)
            verdict.add(response)
            return response

        return OutputGuard(check, restore_placeholders=placeholders)
