"""Wire schemas of the router bento (OpenAI-compatible chat completions, plus ragyard's extras).

Extras a client may send (with the `openai` client: `extra_body={"ragyard": {...}}`):
``ragyard.session_id`` (conversation memory), ``ragyard.cache`` (false: skip the caches).
The same two also work as headers: ``X-Ragyard-Session``, ``X-Ragyard-Cache: off``.

Extras in every answer: ``citations`` [{index, source, title, chunk_id, doc_id, score}] (RAG models),
and ``ragyard`` {trace_id, cost {amount, currency}, cache, route, prompt, fallbacks,
usage_estimated}; a stream sends both on its last chunk, the one that carries `usage`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from router.routing.outcomes import FEEDBACK_SCORE


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart] = Field(description="Text, or a list of text parts (joined).")

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class StreamOptions(BaseModel):
    include_usage: bool = True


class RagyardOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    session_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="Conversation memory: earlier turns of this session join the prompt.",
    )
    cache: bool = Field(default=True, description="false: neither read nor write the response caches.")


class ChatCompletionRequest(BaseModel):
    # OpenAI sends many optional fields; those not listed here are accepted and ignored.
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, description="ragyard/auto, ragyard/<catalog model>, or a catalog model.")
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    n: int = Field(default=1, ge=1, le=1, description="Only one choice per request.")
    user: str | None = Field(default=None, max_length=256)
    ragyard: RagyardOptions = Field(default_factory=RagyardOptions)


class FeedbackRequest(BaseModel):
    id: str = Field(min_length=1, description="The completion's id (chatcmpl-...) or its ragyard.trace_id.")
    name: str = Field(default=FEEDBACK_SCORE, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    value: float = Field(ge=-1e6, le=1e6, description="The score, e.g. 1 for thumbs up, 0 for down.")
    comment: str | None = Field(default=None, max_length=2000)
