"""Input and output safety through the safety bento (`router.guardrails`): the user's messages
checked before anything else sees them, the whole answer checked before the client does (a stream
goes through the guard `stream_guard` makes, in the generation step). The bento unreachable means
a 503: safety fails closed, unless it is switched off."""

from __future__ import annotations

import dataclasses

from ragyard.contracts.safety import WITHHOLDING
from ragyard.kit.errors import Rejected, ServiceError, Unavailable
from ragyard.settings import RouterSettings
from router.guardrails import Guardrails, InputBlocked
from router.output_guard import OutputGuard
from router.turn import Turn


class SafetyChecks:
    def __init__(self, guardrails: Guardrails | None, config: RouterSettings):
        self.guardrails = guardrails  # None: safety is switched off
        self.config = config

    async def check_input(self, turn: Turn) -> None:
        """Block, redact or flag the user's messages; what follows sees only the checked request."""
        if self.guardrails is not None:
            with turn.step("input_safety", policy=self.config.safety_policy) as span:
                try:
                    messages, turn.verdict = await turn.guard(
                        self.guardrails.check_input(turn.request.messages), self.config.safety_timeout_s
                    )
                except InputBlocked as exc:
                    span.attributes.update({"action": "block", "categories": exc.categories})
                    raise ServiceError(
                        400,
                        f"messages: refused by the safety policy ({', '.join(exc.categories)})",
                        param="messages",
                        code="content_filter",
                    ) from exc
                except Rejected as exc:
                    raise ServiceError(
                        413 if exc.error.status == 413 else 400,
                        f"messages: {exc.error.message}",
                        param="messages",
                        code="invalid_value",
                    ) from exc
                except (TimeoutError, Unavailable) as exc:
                    raise Unavailable(f"safety check unavailable: {exc}") from exc
                span.attributes.update(turn.verdict.attributes())
            turn.request = dataclasses.replace(turn.request, messages=messages)
        turn.trace.input = turn.request.question

    async def check_output(self, turn: Turn, text: str) -> str:
        """The whole answer as the client may see it: redacted, or withheld when blocked or held for review."""
        if self.guardrails is None:
            return text
        with turn.step("output_safety", policy=self.config.safety_policy) as span:
            try:
                checked, verdict = await turn.guard(
                    self.guardrails.check_output(text, turn.verdict.placeholders), self.config.safety_timeout_s
                )
            except (TimeoutError, Unavailable, Rejected) as exc:
                raise answer_unchecked(exc) from exc
            span.attributes.update(verdict.attributes())
        turn.output_verdict = verdict
        if verdict.action in WITHHOLDING:
            turn.outcome.finish_reason = "content_filter"
        return checked

    def stream_guard(self, turn: Turn) -> OutputGuard | None:
        """The guard a stream's deltas go through (every window it checks adds to the turn's output
        verdict); None when safety is off."""
        return self.guardrails.stream_guard(turn.verdict.placeholders, turn.output_verdict) if self.guardrails else None


def answer_unchecked(exc: BaseException) -> Unavailable:
    return Unavailable(f"safety check of the answer unavailable: {exc}")
