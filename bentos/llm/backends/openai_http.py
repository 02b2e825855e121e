"""Any OpenAI-compatible HTTP provider (OpenAI, a vLLM server, a llama.cpp server) by base URL and key."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import openai

from bentos.llm.backends.base import ChatBackend, Generation, Piece, Stream, TokenUsage
from bentos.llm.backends.llama_cpp import ChatTokenizer, load_llama
from bentos.llm.errors import BackendError
from ragyard.kit.errors import ServiceError


def provider_error(name: str, exc: openai.APIError) -> ServiceError:
    """A provider's 4xx passes through in the same shape (it is the caller's mistake); anything else is a 502."""
    if isinstance(exc, openai.APIStatusError) and 400 <= exc.status_code < 500 and exc.status_code != 401:
        body = exc.body.get("error", exc.body) if isinstance(exc.body, dict) else {}
        body = body if isinstance(body, dict) else {}
        return ServiceError(
            exc.status_code,
            f"model {name!r}: {body.get('message') or exc.message}",
            param=body.get("param"),
            code=body.get("code") or "provider_error",
            type_=body.get("type") or "invalid_request_error",
        )
    return BackendError(name, f"{type(exc).__name__}: {exc}")


class OpenAIHTTPBackend(ChatBackend):
    kind = "openai"
    self_hosted = False
    renders_chat = False

    def __init__(
        self,
        name: str,
        model: str,
        base_url: str,
        api_key_env: str,
        context_length: int,
        tokenizer_path: Path | None = None,
        timeout_s: float = 300.0,
    ):
        self.name = name
        self.model = model
        self.context_length = context_length
        api_key = os.environ.get(api_key_env, "") if api_key_env else ""
        # Retries belong to the caller (the router); a provider's 429 reaches it with its Retry-After.
        self.client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key or "none", max_retries=0, timeout=timeout_s)
        # Without a local tokenizer prompt tokens are unknown before the call; the provider checks.
        self.tokenizer = (
            ChatTokenizer(load_llama(tokenizer_path, context_length, 1, vocab_only=True)) if tokenizer_path else None
        )

    async def count_prompt_tokens(self, messages, tools) -> int | None:
        return self.tokenizer.count(messages, tools) if self.tokenizer else None

    def _arguments(self, request: Generation) -> dict[str, Any]:
        optional = {
            "stop": request.stop or None,
            "seed": request.seed,
            "response_format": request.response_format,
            "tools": request.tools,
            "tool_choice": request.tool_choice,
            "parallel_tool_calls": request.parallel_tool_calls,
            "logit_bias": {str(k): v for k, v in request.logit_bias.items()} if request.logit_bias else None,
        }
        return dict(
            model=self.model,
            messages=request.messages,
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            presence_penalty=request.presence_penalty,
            frequency_penalty=request.frequency_penalty,
            stream=True,
            stream_options={"include_usage": True},
            **{key: value for key, value in optional.items() if value is not None},
        )

    async def generate(self, request: Generation, prompt_tokens: int | None) -> Stream:
        try:
            stream = await self.client.chat.completions.create(**self._arguments(request))
        except openai.APIError as exc:
            raise provider_error(self.name, exc) from exc
        usage = None
        pieces = 0
        try:
            async for chunk in stream:
                usage = chunk.usage or usage
                for choice in chunk.choices:
                    delta = choice.delta
                    tool_calls = (
                        [call.model_dump(exclude_none=True) for call in delta.tool_calls]
                        if delta and delta.tool_calls
                        else None
                    )
                    content = delta.content if delta else None
                    if content or tool_calls or choice.finish_reason:
                        pieces += bool(content or tool_calls)
                        yield Piece(content, tool_calls, choice.finish_reason)
        except openai.APIError as exc:
            raise provider_error(self.name, exc) from exc
        finally:
            await stream.close()  # closing the connection is how a provider learns to stop
        if usage is not None:
            yield TokenUsage(usage.prompt_tokens, usage.completion_tokens)
        else:
            # The provider sent no usage (llama.cpp's server ignores stream_options): count locally;
            # each streamed piece carries one token.
            yield TokenUsage(prompt_tokens or 0, pieces)

    async def aclose(self) -> None:
        await self.client.close()
