"""The vLLM backend on a GPU. Skipped here (no GPU, no vllm); on a GPU machine with the gpu extra,
point RAGYARD_TEST_VLLM_MODEL at a local Hugging Face model folder (no hub downloads)."""

import asyncio
import os

import pytest

from bentos.llm.backends import Generation, Piece, TokenUsage
from bentos.llm.backends.vllm import vllm_available

MODEL = os.environ.get("RAGYARD_TEST_VLLM_MODEL", "")
pytestmark = pytest.mark.skipif(
    not (vllm_available() and MODEL), reason="needs a GPU, the gpu extra (vllm) and RAGYARD_TEST_VLLM_MODEL"
)


def test_vllm_streams_counts_and_stops_at_max_tokens():
    from bentos.llm.backends.vllm import VLLMBackend

    async def main():
        backend = VLLMBackend("gpu-model", MODEL, context_length=2048)
        messages = [{"role": "user", "content": "What is a Python list?"}]
        prompt_tokens = await backend.count_prompt_tokens(messages, None)
        items = [
            item
            async for item in backend.generate(
                Generation(messages=messages, max_tokens=8, temperature=0.0), prompt_tokens
            )
        ]
        await backend.aclose()
        return prompt_tokens, items

    prompt_tokens, items = asyncio.run(main())
    usage = items[-1]
    assert isinstance(usage, TokenUsage) and usage.prompt_tokens == prompt_tokens > 0
    assert usage.completion_tokens == 8
    pieces = [item for item in items if isinstance(item, Piece)]
    assert "".join(p.content or "" for p in pieces) and pieces[-1].finish_reason == "length"
