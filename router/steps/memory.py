"""Conversation memory: a session's earlier turns before the question, this turn kept after the answer."""

from __future__ import annotations

import anyio

from router.chat import Message
from router.memory import Memory
from router.turn import Turn


class ConversationMemory:
    def __init__(self, memory: Memory):
        self.memory = memory

    async def history(self, turn: Turn) -> list[Message]:
        request = turn.request
        if not request.session_id:
            return []
        turns = await anyio.to_thread.run_sync(self.memory.history, request.session_id, request.key_id)
        return [Message.of(m) for m in turns]

    async def remember(self, turn: Turn) -> None:
        """The question and the answer as kept (`Turn.kept_text`)."""
        request = turn.request
        if request.session_id:
            with turn.step("memory"):
                await anyio.to_thread.run_sync(
                    self.memory.append, request.session_id, request.key_id, request.question, turn.kept_text()
                )
