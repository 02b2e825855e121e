"""vLLM's async engine on a GPU (the `gpu` extra). Import-guarded: this machine has neither vLLM nor a GPU.

Written against vLLM 0.33 (`AsyncLLMEngine`, `SamplingParams`, `StructuredOutputsParams`); its tests
skip without a GPU, so this module has not run here.
"""

from __future__ import annotations

import uuid
from typing import Any

from bentos.llm.backends.base import ChatBackend, Generation, Piece, Stream, TokenUsage
from bentos.llm.errors import BackendError


def vllm_available() -> bool:
    try:
        import torch
        import vllm  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


class VLLMBackend(ChatBackend):
    kind = "vllm"
    self_hosted = True
    renders_chat = True

    def __init__(self, name: str, model: str, context_length: int):
        try:
            from vllm import AsyncEngineArgs, AsyncLLMEngine
        except ImportError as exc:
            raise RuntimeError(
                f"llm.models[{name}]: backend 'vllm' needs a GPU machine with the gpu extra "
                "(pip install 'ragyard[gpu]')"
            ) from exc
        self.name = name
        self.engine = AsyncLLMEngine.from_engine_args(AsyncEngineArgs(model=model, max_model_len=context_length))
        self.context_length = context_length
        self._tokenizer = None

    async def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = await self.engine.get_tokenizer()
        return self._tokenizer

    async def render(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> list[int]:
        tokenizer = await self.tokenizer()
        return tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True, tokenize=True)

    async def count_prompt_tokens(self, messages, tools) -> int:
        return len(await self.render(messages, tools))

    def _sampling(self, request: Generation):
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        structured = None
        if request.response_format and request.response_format.get("type") == "json_object":
            schema = request.response_format.get("schema")
            structured = StructuredOutputsParams(json=schema) if schema else StructuredOutputsParams(json_object=True)
        return SamplingParams(
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            stop=request.stop or None,
            seed=request.seed,
            presence_penalty=request.presence_penalty,
            frequency_penalty=request.frequency_penalty,
            logit_bias=request.logit_bias,
            structured_outputs=structured,
        )

    async def generate(self, request: Generation, prompt_tokens: int | None) -> Stream:
        from vllm.inputs import TokensPrompt

        prompt = await self.render(request.messages, request.tools)
        request_id = uuid.uuid4().hex
        sent = 0
        output = None
        finished = False
        try:
            async for output in self.engine.generate(
                TokensPrompt(prompt_token_ids=prompt), self._sampling(request), request_id
            ):
                completion = output.outputs[0]
                text = completion.text  # cumulative
                if len(text) > sent:
                    yield Piece(text[sent:])
                    sent = len(text)
                if completion.finish_reason:
                    yield Piece(finish_reason=completion.finish_reason)
            finished = True
        except Exception as exc:
            raise BackendError(self.name, f"{type(exc).__name__}: {exc}") from exc
        finally:
            if not finished:
                await self.engine.abort(request_id)  # the client left: free the GPU slot
        completion_tokens = len(output.outputs[0].token_ids) if output is not None else 0
        yield TokenUsage(len(prompt), completion_tokens)

    async def aclose(self) -> None:
        self.engine.shutdown()
