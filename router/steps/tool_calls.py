"""Output safety for tool calls: each call's arguments are checked as text by the safety bento, as an
answer's content is, before the client sees the calls (whole: a stream sends them once checked).
A block or a hold for review withholds the answer (finish_reason content_filter); a redaction replaces the arguments by
their redacted text; placeholders of a pseudonymizing policy are put back, as in content. What the
checks find joins the answer's output verdict (a flag is an event)."""

from __future__ import annotations

import asyncio

from ragyard.contracts.safety import WITHHOLDING
from ragyard.kit.errors import Rejected, Unavailable
from ragyard.settings import RouterSettings
from router.generation import Generated
from router.guardrails import Guardrails, Verdict
from router.steps.safety import answer_unchecked
from router.turn import Turn


class ToolCallChecks:
    def __init__(self, guardrails: Guardrails | None, config: RouterSettings):
        self.guardrails = guardrails  # None: safety is switched off
        self.config = config

    async def check(self, turn: Turn, generated: Generated) -> list[dict]:
        """The calls as the client may see them, also set on the outcome; none when withheld."""
        calls = generated.tool_calls
        if not calls:
            return []
        with turn.step("tool_calls_safety", tools=[c["function"]["name"] for c in calls]) as span:
            if self.guardrails is not None:
                try:
                    checked = await turn.guard(
                        asyncio.gather(
                            *(
                                self.guardrails.check_output(c["function"]["arguments"], turn.verdict.placeholders)
                                for c in calls
                            )
                        ),
                        self.config.safety_timeout_s,
                    )
                except (TimeoutError, Unavailable, Rejected) as exc:
                    raise answer_unchecked(exc) from exc
                verdict = Verdict()
                for _, one in checked:
                    verdict.merge(one)
                span.attributes.update(verdict.attributes())
                turn.output_verdict.merge(verdict)  # a flagged or blocked call flags the answer, as content does
                if verdict.action in WITHHOLDING:
                    turn.outcome.finish_reason = "content_filter"
                    return []
                calls = [
                    {**call, "function": {**call["function"], "arguments": arguments}}
                    for call, (arguments, _) in zip(calls, checked, strict=True)
                ]
        turn.outcome.tool_calls = calls
        return calls
