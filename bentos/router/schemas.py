"""Wire schemas of the router bento (OpenAI-compatible chat completions, plus ragyard's extras).

Extras a client may send (with the `openai` client: `extra_body={"ragyard": {...}}`):
``ragyard.session_id`` (conversation memory), ``ragyard.cache`` (false: skip the caches),
``ragyard.memory`` (false: no long-term memory of the request's `user` is read or written).
The first two also work as headers: ``X-Ragyard-Session``, ``X-Ragyard-Cache: off``.

Extras in every answer: ``citations`` [{index, source, title, chunk_id, doc_id, score}] (RAG models),
and ``ragyard`` {trace_id, cost {amount, currency}, cache, route, prompt, fallbacks,
usage_estimated, memory, held_for_review}: memory is {used: [ids], tokens} (or with `error` when the
memory bento is down, or {used: [], opted_out: true}); null for a request without a `user`;
held_for_review is true when the output policy's `review` action withheld the answer for a reviewer;
grounding is {claims, unsupported, score} for a generated RAG answer: its checkable claims (numbers,
options, code names) and those found in none of its passages (ragyard/grounding.py), else null.
A stream sends both on its finishing chunk (the one with `finish_reason`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from router.routing.outcomes import FEEDBACK_SCORE


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class FunctionCall(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    arguments: str = Field(description="The arguments as a JSON string, as the model wrote them.")


class ToolCall(BaseModel):
    id: str = Field(min_length=1, max_length=128)
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = Field(default=None, description="Text, or a list of text parts (joined).")
    name: str | None = Field(default=None, max_length=64)
    tool_calls: list[ToolCall] | None = Field(default=None, description="An assistant's calls.")
    tool_call_id: str | None = Field(default=None, max_length=128, description="A tool message: the call it answers.")
    # What OpenAI's clients send back with an earlier answer's message: accepted, not used.
    refusal: str | None = None
    annotations: list[Any] | None = None
    audio: None = None
    function_call: None = None

    @model_validator(mode="after")
    def _fields_of_the_role(self) -> ChatMessage:
        if self.role == "assistant":
            if self.content is None and not self.tool_calls:
                raise PydanticCustomError("missing", "an assistant message needs content or tool_calls")
        elif self.content is None:
            raise PydanticCustomError("missing", f"a {self.role} message needs content")
        if self.tool_calls and self.role != "assistant":
            raise PydanticCustomError("invalid", "only assistant messages carry tool_calls")
        if (self.role == "tool") != (self.tool_call_id is not None):
            raise PydanticCustomError("invalid", "tool_call_id belongs to tool messages, and each needs one")
        return self

    def text(self) -> str:
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        return "".join(p.text for p in self.content)


class FunctionDefinition(BaseModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(BaseModel):
    type: Literal["function"] = Field(description="Function tools only.")
    function: FunctionDefinition


class NamedToolChoice(BaseModel):
    type: Literal["function"]
    function: dict[Literal["name"], str]


class JSONSchemaFormat(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None


class StreamOptions(BaseModel):
    include_usage: bool = False
    include_obfuscation: bool | None = None  # accepted; nothing is obfuscated


class RagyardOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    session_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="Conversation memory: earlier turns of this session join the prompt.",
    )
    cache: bool = Field(default=True, description="false: neither read nor write the response caches.")
    memory: bool = Field(
        default=True,
        description="false: long-term memory (of the request's `user`) is neither read nor written for this request.",
    )


# OpenAI's fields the router cannot honour: any value but null (or the one given) is a 400 saying why.
UNSUPPORTED = {
    "audio": "audio output is not supported",
    "functions": "deprecated by OpenAI and not supported; use tools",
    "function_call": "deprecated by OpenAI and not supported; use tool_choice",
    "moderation": "not supported; the router's safety policy checks every request",
    "prediction": "predicted outputs are not supported",
    "reasoning_effort": "not supported: the served models do not reason",
    "verbosity": "not supported",
    "web_search_options": "web search is not supported",
}


# Fields the router honours at their default only: (the values accepted, why others are refused).
ONLY_DEFAULT = {
    "n": ((None, 1), "only 1 choice per request is supported"),
    "logprobs": ((None, False), "log probabilities are not returned; only false is supported"),
    "top_logprobs": ((None, 0), "log probabilities are not returned; only 0 is supported"),
    "store": ((None, False), "completions are not stored for later retrieval; only false is supported"),
}


class ChatCompletionRequest(BaseModel):
    """OpenAI's chat-completions request, field by field (README: "Chat completions: the fields"): what
    the router passes on, uses, accepts as a hint, or refuses with a 400 naming the field. A field
    OpenAI does not have is a 400 too, never silently dropped."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, description="ragyard/auto, ragyard/<catalog model>, or a catalog model.")
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100)]] | None = None
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = Field(default=None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    n: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    modalities: list[Literal["text"]] | None = Field(default=None, description="Text only.")
    store: bool | None = None
    service_tier: Literal["auto", "default"] | None = None
    user: str | None = Field(default=None, max_length=256)
    safety_identifier: str | None = Field(
        default=None, max_length=256, description="The trace's user id when `user` is absent."
    )
    metadata: dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]] | None = Field(
        default=None, max_length=16, description="Recorded on the request's trace."
    )
    prompt_cache_key: str | None = Field(
        default=None, max_length=1024, description="A hint; the router's caches key on the request itself."
    )
    prompt_cache_options: dict[str, Any] | None = None  # a hint, like prompt_cache_key
    prompt_cache_retention: str | None = None  # a hint, like prompt_cache_key
    audio: Any = None
    functions: Any = None
    function_call: Any = None
    moderation: Any = None
    prediction: Any = None
    reasoning_effort: Any = None
    verbosity: Any = None
    web_search_options: Any = None
    ragyard: RagyardOptions = Field(default_factory=RagyardOptions)

    @field_validator(*UNSUPPORTED)
    @classmethod
    def _unsupported(cls, value: Any, info: ValidationInfo) -> Any:
        assert info.field_name is not None, "a field validator knows its field"
        if value is not None:
            raise PydanticCustomError("unsupported", UNSUPPORTED[info.field_name])
        return value

    @field_validator("n", "logprobs", "top_logprobs", "store")
    @classmethod
    def _only_the_default(cls, value: Any, info: ValidationInfo) -> Any:
        assert info.field_name is not None, "a field validator knows its field"
        if value not in ONLY_DEFAULT[info.field_name][0]:
            raise PydanticCustomError("unsupported", ONLY_DEFAULT[info.field_name][1])
        return value

    @field_validator("tool_choice")
    @classmethod
    def _tool_choice_needs_tools(cls, value: Any, info: ValidationInfo) -> Any:
        tools = info.data.get("tools") or []
        if not tools and value not in (None, "none", "auto"):
            raise PydanticCustomError("invalid", "requires tools")
        if isinstance(value, NamedToolChoice) and value.function.get("name") not in {t.function.name for t in tools}:
            raise PydanticCustomError("invalid", "names a function that is not among tools")
        return value

    def upstream_params(self) -> dict[str, Any]:
        """What the model gets besides messages and max_tokens, as OpenAI's API names it."""
        params = {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "stop": self.stop,
            "seed": self.seed,
            "presence_penalty": self.presence_penalty,
            "frequency_penalty": self.frequency_penalty,
            "logit_bias": self.logit_bias,
            "parallel_tool_calls": self.parallel_tool_calls,
            "response_format": self.response_format.model_dump(by_alias=True, exclude_none=True)
            if self.response_format
            else None,
            "tools": [t.model_dump(exclude_none=True) for t in self.tools] if self.tools else None,
            "tool_choice": self.tool_choice.model_dump()
            if isinstance(self.tool_choice, NamedToolChoice)
            else self.tool_choice,
        }
        return {key: value for key, value in params.items() if value is not None}


class FeedbackRequest(BaseModel):
    id: str = Field(min_length=1, description="The completion's id (chatcmpl-...) or its ragyard.trace_id.")
    name: str = Field(default=FEEDBACK_SCORE, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    value: float = Field(ge=-1e6, le=1e6, description="The score, e.g. 1 for thumbs up, 0 for down.")
    comment: str | None = Field(default=None, max_length=2000)
