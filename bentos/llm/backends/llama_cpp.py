"""llama.cpp on CPU through llama-cpp-python: any GGUF file, the packaged models by name."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from bentos.llm.backends.base import ChatBackend, Generation, Piece, Stream, TokenUsage
from bentos.llm.errors import BackendError

if TYPE_CHECKING:  # llama_cpp loads the native library: imported where a model is loaded
    from llama_cpp import llama_types

_DONE = object()


class ChatTokenizer:
    """Renders messages with a GGUF's own chat template and counts the tokens, as llama.cpp will."""

    def __init__(self, llama):
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = llama.metadata.get("tokenizer.chat_template")
        if not template:
            raise RuntimeError(f"{llama.model_path}: the GGUF has no chat template (tokenizer.chat_template)")

        def special(token_id: int) -> str:
            return llama.detokenize([token_id], special=True).decode("utf-8", "replace") if token_id >= 0 else ""

        self.llama = llama
        # A template that never mentions tools (SmolLM2's ChatML) does not show them to the model.
        self.shows_tools = "tools" in template
        self.formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=special(llama.token_eos()),
            bos_token=special(llama.token_bos()),
            stop_token_ids=[llama.token_eos()],
        )

    def count(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> int:
        # OpenAI-shaped dicts (the request's, validated on the way in): what llama.cpp's TypedDicts describe.
        rendered = self.formatter(
            messages=cast("list[llama_types.ChatCompletionRequestMessage]", messages),
            tools=cast("list[llama_types.ChatCompletionTool] | None", tools),
        )
        return len(
            self.llama.tokenize(rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True)
        )


class SampledTokens:
    """A logits processor called once per sampled token: counts them (the usage) and applies logit_bias.

    The bias is applied here rather than through llama-cpp-python's `logit_bias` argument: 0.3.36
    drops both the bias and any other logits processor when given the two together
    (`logits_processor = logits_processor.extend(...)` assigns None).
    """

    def __init__(self, logit_bias: dict[int, float] | None):
        self.count = 0
        self.bias = logit_bias or {}

    def __call__(self, input_ids, logits):
        self.count += 1
        for token, bias in self.bias.items():
            if 0 <= token < len(logits):
                logits[token] += bias
        return logits


def load_llama(path: Path, context_length: int, n_threads: int, vocab_only: bool = False):
    from llama_cpp import Llama

    return Llama(
        model_path=str(path),
        n_ctx=context_length,
        n_threads=n_threads,
        n_threads_batch=n_threads,
        vocab_only=vocab_only,
        verbose=False,
    )


class LlamaCppBackend(ChatBackend):
    kind = "llama_cpp"
    self_hosted = True
    renders_chat = True

    def __init__(self, name: str, path: Path, context_length: int, n_threads: int):
        self.name = name
        self.llama = load_llama(path, context_length, n_threads)
        self.tokenizer = ChatTokenizer(self.llama)
        # Generate with the same template that counts the tokens (not a built-in format llama.cpp guesses).
        self.llama.chat_handler = self.tokenizer.formatter.to_chat_handler()
        self.context_length = self.llama.n_ctx()
        # One generation at a time per loaded model: a cancelled one finishes its token first.
        self._busy = threading.Lock()

    @property
    def supports_tools(self) -> bool:
        return self.tokenizer.shows_tools

    async def count_prompt_tokens(self, messages, tools) -> int:
        # In the event loop: a template and a tokenizer pass take well under a millisecond for
        # typical prompts, less than a hop to a worker thread costs on a busy machine.
        return self.tokenizer.count(messages, tools)

    def _arguments(self, request: Generation, sampler: SampledTokens) -> dict[str, Any]:
        from llama_cpp import LogitsProcessorList

        return dict(
            messages=request.messages,
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            stop=request.stop or None,
            seed=request.seed,
            response_format=request.response_format,
            tools=request.tools,
            tool_choice=request.tool_choice,
            presence_penalty=request.presence_penalty,
            frequency_penalty=request.frequency_penalty,
            repeat_penalty=1.0,
            stream=True,
            logits_processor=LogitsProcessorList([sampler]),
        )

    async def generate(self, request: Generation, prompt_tokens: int | None) -> Stream:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        stop = threading.Event()
        sampler = SampledTokens(request.logit_bias)

        def produce() -> None:
            # llama.cpp blocks, so it runs in this thread; the event loop gets each chunk as it comes.
            try:
                with self._busy:
                    chunks = self.llama.create_chat_completion(**self._arguments(request, sampler))
                    try:
                        for chunk in chunks:
                            if stop.is_set():
                                break
                            loop.call_soon_threadsafe(queue.put_nowait, chunk)
                    finally:
                        chunks.close()
            except Exception as exc:  # noqa: BLE001 - any engine failure is reported to the caller below
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _DONE)

        threading.Thread(target=produce, name="llama-generate", daemon=True).start()
        finish_reason = None
        try:
            while (chunk := await queue.get()) is not _DONE:
                if isinstance(chunk, Exception):
                    raise BackendError(self.name, f"{type(chunk).__name__}: {chunk}") from chunk
                choice = chunk["choices"][0]
                delta = choice.get("delta") or {}
                finish_reason = choice.get("finish_reason") or finish_reason
                if delta.get("content") or delta.get("tool_calls") or choice.get("finish_reason"):
                    yield Piece(delta.get("content"), delta.get("tool_calls"), choice.get("finish_reason"))
            # A natural stop samples one end-of-turn token that is not part of the answer.
            completion = sampler.count - 1 if finish_reason == "stop" else sampler.count
            yield TokenUsage(prompt_tokens or 0, max(completion, 0))
        finally:
            stop.set()  # the client went away or the caller closed us: stop after this token
