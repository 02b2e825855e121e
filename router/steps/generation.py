"""Generation: the answer from the first model of the plan's chain that gives one (`router.generation`:
retries, breakers, fallbacks); a stream through the output guard, which may end it early."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Awaitable

from ragyard.kit.errors import Rejected, ServiceError, Unavailable
from router.chat import wire_messages
from router.generation import Generated, Generator
from router.output_guard import OutputGuard, StreamBlocked
from router.steps.safety import answer_unchecked
from router.turn import Plan, Turn


def refused(exc: Rejected) -> ServiceError:
    """An upstream that refuses the request itself (a prompt over its context length...): a 400."""
    return ServiceError(
        400, f"messages: the model refused the request: {exc.error.message}", param="messages", code="upstream_rejected"
    )


async def checked(released: Awaitable[str]) -> str:
    """What the output guard releases; the guard's safety bento failing is the answer unchecked."""
    try:
        return await released
    except (Unavailable, Rejected) as exc:
        raise answer_unchecked(exc) from exc


class GenerationStep:
    def __init__(self, generator: Generator):
        self.generator = generator

    async def complete(self, turn: Turn, plan: Plan) -> Generated:
        with turn.step("generate", model=plan.chain[0].card.name):
            try:
                return await turn.guard(
                    self.generator.complete(
                        plan.chain, wire_messages(plan.messages), upstream_params(turn), turn.deadline
                    )
                )
            except Rejected as exc:
                raise refused(exc) from exc

    async def stream(
        self, turn: Turn, plan: Plan, generated: Generated, guard: OutputGuard | None
    ) -> AsyncGenerator[str, None]:
        """The model's deltas as the client may see them (`generated` collects text, usage and cost
        as they come); a block by the guard ends the stream with finish_reason content_filter."""
        with turn.step("generate", model=plan.chain[0].card.name, stream=True) as span:
            deltas = self.generator.stream(
                plan.chain, wire_messages(plan.messages), upstream_params(turn), turn.deadline, generated
            )
            try:
                async with contextlib.aclosing(deltas):
                    async for delta in deltas:
                        text = await checked(guard.feed(delta)) if guard else delta
                        if text:
                            yield text
                    if guard and (tail := await checked(guard.finish())):
                        yield tail
            except StreamBlocked as exc:
                generated.finish_reason = "content_filter"
                span.attributes["blocked"] = sorted({f.category for f in exc.response.findings})
            except Rejected as exc:
                raise refused(exc) from exc
            if guard:
                span.attributes["output_safety"] = sorted({f.category for f in guard.findings})


def upstream_params(turn: Turn) -> dict:
    return {"max_tokens": turn.request.max_tokens, **turn.request.params}
