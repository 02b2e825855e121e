"""Backends by catalog `backend` name; `make_backend` loads one catalog entry."""

from __future__ import annotations

from bentos.llm.backends.base import ChatBackend, Generation, Piece, Stream, TokenUsage
from bentos.llm.models import resolve_gguf
from ragyard.settings import CatalogModel, LLMBentoSettings

__all__ = ["ChatBackend", "Generation", "Piece", "Stream", "TokenUsage", "make_backend"]


def make_backend(entry: CatalogModel, settings: LLMBentoSettings) -> ChatBackend:
    models_dir = settings.llm_models_dir
    if entry.backend == "llama_cpp":
        from bentos.llm.backends.llama_cpp import LlamaCppBackend

        return LlamaCppBackend(
            entry.name,
            resolve_gguf(entry.model, models_dir),
            entry.context_length,
            entry.n_threads or settings.llm.n_threads,
        )
    if entry.backend == "openai":
        from bentos.llm.backends.openai_http import OpenAIHTTPBackend

        tokenizer = resolve_gguf(entry.tokenizer, models_dir) if entry.tokenizer else None
        return OpenAIHTTPBackend(
            entry.name, entry.model, entry.base_url, entry.api_key_env, entry.context_length, tokenizer
        )
    if entry.backend == "vllm":
        from bentos.llm.backends.vllm import VLLMBackend

        return VLLMBackend(entry.name, entry.model, entry.context_length)
    raise ValueError(f"llm.models[{entry.name}]: unknown backend {entry.backend!r}")
