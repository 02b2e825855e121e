"""Answers from the catalog's models for the evals: through the LLM bento, or llama.cpp in-process.

`generator_for(settings)` uses the LLM bento's OpenAI API when it answers at `llm.url`, else loads the
catalog's packaged GGUF models with llama-cpp-python in this process. Either way an answer carries its
token usage, wall time and cost: a catalog price when the model has one, else the self-hosted rule of the
LLM bento: the machine's price per hour times the seconds the answer took.

`AnswerCache` keeps every answer in a JSON-lines file under RAGYARD_HOME keyed by (model, the
rendered prompt messages, max_tokens), so the router eval and reruns reuse the answers eval's.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import httpx

from ragyard.settings import CatalogModel, Settings


@dataclass(frozen=True)
class Generation:
    model: str
    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    cost: float
    backend: str  # "llm-bento" or "llama-cpp-in-process"


class Generator(Protocol):
    backend: str

    def generate(self, model: str, messages: list[dict], max_tokens: int) -> Generation: ...


def answer_cost(
    card: CatalogModel, settings: Settings, prompt_tokens: int, completion_tokens: int, seconds: float
) -> float:
    if card.input_per_1k is not None and card.output_per_1k is not None:
        return (prompt_tokens * card.input_per_1k + completion_tokens * card.output_per_1k) / 1000
    return settings.llm.machine_cost_per_hour * seconds / 3600


def catalog_model(settings: Settings, name: str) -> CatalogModel:
    card = settings.llm.model_named(name)
    if card is None:
        raise ValueError(f"model {name!r} is not in the catalog (llm.models): {[m.name for m in settings.llm.models]}")
    return card


class LLMBentoGenerator:
    """Chat completions from the LLM bento's OpenAI-compatible API (temperature 0)."""

    backend = "llm-bento"

    def __init__(self, settings: Settings, timeout_s: float = 300.0):
        from openai import OpenAI

        self.settings = settings
        self.client = OpenAI(
            base_url=settings.llm.url.rstrip("/") + "/v1", api_key="ragyard-eval", timeout=timeout_s, max_retries=2
        )

    def generate(self, model: str, messages: list[dict], max_tokens: int) -> Generation:
        card = catalog_model(self.settings, model)
        started = time.perf_counter()
        response = self.client.chat.completions.create(
            model=model,
            messages=messages,  # type: ignore[arg-type]
            max_tokens=max_tokens,
            temperature=0.0,
        )
        seconds = time.perf_counter() - started
        usage = response.usage
        prompt_tokens = usage.prompt_tokens if usage else 0
        completion_tokens = usage.completion_tokens if usage else 0
        return Generation(
            model,
            response.choices[0].message.content or "",
            prompt_tokens,
            completion_tokens,
            seconds,
            answer_cost(card, self.settings, prompt_tokens, completion_tokens, seconds),
            self.backend,
        )


class LlamaCppGenerator:
    """The catalog's llama_cpp models, each loaded once in this process and kept (greedy decoding)."""

    backend = "llama-cpp-in-process"

    def __init__(self, settings: Settings):
        self.settings = settings
        self._loaded: dict[str, object] = {}
        self._lock = threading.Lock()

    def _llama(self, card: CatalogModel):
        if card.name not in self._loaded:
            from llama_cpp import Llama

            from bentos.llm.models import resolve_gguf

            if card.backend != "llama_cpp":
                raise ValueError(
                    f"model {card.name!r} has backend {card.backend!r}; in-process generation runs "
                    f"llama_cpp models only (start the LLM bento for the others)"
                )
            path = resolve_gguf(card.model, self.settings.llm_models_dir)
            self._loaded[card.name] = Llama(
                model_path=str(path),
                n_ctx=min(card.context_length, 4096),
                n_threads=card.n_threads or self.settings.llm.n_threads,
                verbose=False,
                seed=0,
            )
        return self._loaded[card.name]

    def generate(self, model: str, messages: list[dict], max_tokens: int) -> Generation:
        card = catalog_model(self.settings, model)
        with self._lock:
            llama = self._llama(card)
            started = time.perf_counter()
            result = llama.create_chat_completion(messages=messages, max_tokens=max_tokens, temperature=0.0)
            seconds = time.perf_counter() - started
        usage = result["usage"]
        return Generation(
            model,
            result["choices"][0]["message"]["content"] or "",
            usage["prompt_tokens"],
            usage["completion_tokens"],
            seconds,
            answer_cost(card, self.settings, usage["prompt_tokens"], usage["completion_tokens"], seconds),
            self.backend,
        )


def measured_prices(
    generator: Generator, settings: Settings, models: list[str], long_prompt: list[dict], probe_tokens: int = 48
) -> dict[str, tuple[float, float]]:
    """(input, output) USD per 1k tokens of each model, as the LLM bento prices a self-hosted one
    (machine cost over measured throughput), measured now, back to back: prefill speed from
    `long_prompt` with one new token, decode speed from a short prompt. Answers reused from the
    cache were timed in other runs under other load, so their wall times do not compare; these do.
    A model with configured prices keeps them."""
    from bentos.llm.pricing import PROBE_MESSAGES, price_per_1k

    rate = settings.llm.machine_cost_per_hour
    prices = {}
    for model in models:
        card = catalog_model(settings, model)
        if card.input_per_1k is not None and card.output_per_1k is not None:
            prices[model] = (card.input_per_1k, card.output_per_1k)
            continue
        generator.generate(model, PROBE_MESSAGES, 1)  # load and warm the model
        prefill = generator.generate(model, long_prompt, 1)
        prefill_tok_s = prefill.prompt_tokens / prefill.seconds
        decode = generator.generate(model, PROBE_MESSAGES, probe_tokens)
        decode_s = max(decode.seconds - decode.prompt_tokens / prefill_tok_s, 1e-6)
        prices[model] = (price_per_1k(rate, prefill_tok_s), price_per_1k(rate, decode.completion_tokens / decode_s))
    return prices


def llm_bento_ready(settings: Settings, timeout_s: float = 2.0) -> bool:
    try:
        return httpx.get(settings.llm.url.rstrip("/") + "/readyz", timeout=timeout_s).status_code == 200
    except httpx.HTTPError:
        return False


def generator_for(settings: Settings) -> Generator:
    return LLMBentoGenerator(settings) if llm_bento_ready(settings) else LlamaCppGenerator(settings)


class AnswerCache:
    """Generated answers on disk (JSON lines, append-only), keyed by model, prompt messages and max_tokens."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._entries: dict[str, Generation] = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    row = json.loads(line)
                    self._entries[row["key"]] = Generation(**row["generation"])

    @classmethod
    def for_settings(cls, settings: Settings) -> AnswerCache:
        return cls(settings.home / "evals" / "answer_cache.jsonl")

    @staticmethod
    def key(model: str, messages: list[dict], max_tokens: int) -> str:
        blob = json.dumps([model, messages, max_tokens], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    def get(self, model: str, messages: list[dict], max_tokens: int) -> Generation | None:
        return self._entries.get(self.key(model, messages, max_tokens))

    def put(self, model: str, messages: list[dict], max_tokens: int, generation: Generation) -> None:
        key = self.key(model, messages, max_tokens)
        self._entries[key] = generation
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"key": key, "generation": asdict(generation)}, ensure_ascii=False) + "\n")

    def __len__(self) -> int:
        return len(self._entries)


def generate_cached(
    cache: AnswerCache, generator: Generator, model: str, messages: list[dict], max_tokens: int
) -> tuple[Generation, bool]:
    """(the answer, whether it came from the cache)."""
    cached = cache.get(model, messages, max_tokens)
    if cached is not None:
        return cached, True
    generation = generator.generate(model, messages, max_tokens)
    cache.put(model, messages, max_tokens, generation)
    return generation, False
