"""The RAG prompt: chat templates in the MLflow prompt registry, resolved by alias with a sticky A/B split.

A prompt is a list of chat messages whose contents hold `{{variables}}`; the RAG prompt takes
`{{context}}` (the numbered retrieved passages) and `{{question}}`. `seed_prompts` registers the
built-in template as version 1 and points the `production` alias at it. `PromptResolver.resolve`
picks an alias by the configured weights (the same user id always gets the same alias), loads the
version that alias points at, and caches it for `prompts.cache_ttl_s` seconds, so moving an alias
in the MLflow UI takes effect within seconds. The caller records `name`, `version` and `alias`.

When MLflow is unreachable a request is never failed for it: the last version loaded is used
past its TTL, and before any load succeeded the built-in template (version None, alias
"builtin") is returned. A failed load is retried after `FAILURE_BACKOFF_S`, so during an outage
at most one request in that time waits for MLflow's connection retries (about 3 s).
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

# What MLflow calls a template variable: `{{ name }}`.
from mlflow.prompt.constants import PROMPT_TEMPLATE_VARIABLE_PATTERN as VARIABLE

from ragyard.settings import PromptSettings, RouterBentoSettings
from ragyard.tracking import mlflow_client

log = logging.getLogger(__name__)

BUILTIN_ALIAS = "builtin"
FAILURE_BACKOFF_S = 30.0  # after MLflow failed to answer, retry it no sooner than this
RAG_VARIABLES = ("context", "question")
RAG_TEMPLATE: tuple[dict[str, str], ...] = (
    {
        "role": "system",
        "content": (
            "You are ragyard, an assistant that answers questions from the numbered context passages "
            "below and nothing else.\n"
            "- Cite every passage you use by its number in square brackets, like [1] or [2][3].\n"
            "- If the passages do not contain the answer, say that you do not know; do not guess.\n"
            "- Answer concisely; show code when the question asks how to do something.\n\n"
            "Context:\n{{context}}"
        ),
    },
    {"role": "user", "content": "{{question}}"},
)


class PromptUnavailable(LookupError):
    """The prompt has no version at the requested alias nor the default one."""


def render(template: tuple[dict[str, str], ...], values: Mapping[str, object]) -> list[dict[str, str]]:
    """The messages with every `{{variable}}` replaced, in one pass: a value that itself contains
    `{{...}}` (retrieved text can) is inserted as is, never substituted again."""
    missing = sorted({m[1] for message in template for m in VARIABLE.finditer(message["content"])} - set(values))
    if missing:
        raise KeyError(f"the prompt needs values for {missing}")
    return [
        {**message, "content": VARIABLE.sub(lambda m: str(values[m[1]]), message["content"])} for message in template
    ]


@dataclass(frozen=True)
class ResolvedPrompt:
    name: str
    version: int | None  # None: the built-in template, MLflow was unreachable
    alias: str  # the alias the version was loaded by (or "builtin")
    template: tuple[dict[str, str], ...]

    @property
    def uri(self) -> str | None:
        return f"prompts:/{self.name}/{self.version}" if self.version is not None else None

    def render(self, **values: object) -> list[dict[str, str]]:
        return render(self.template, values)


def choose_alias(weights: Mapping[str, float], name: str, user_id: str | None) -> str:
    """An alias drawn by weight; sticky: the same (prompt, user id) always maps to the same alias.

    Without a user id the draw is random per request. Aliases are taken in sorted order, so the
    assignment depends only on the weights, not on how the mapping was written.
    """
    aliases = sorted(a for a, w in weights.items() if w > 0)
    total = sum(weights[a] for a in aliases)
    if user_id is None:
        point = random.random()
    else:
        digest = hashlib.sha256(f"{name}\x00{user_id}".encode()).digest()
        point = int.from_bytes(digest[:8], "big") / 2**64
    cumulative = 0.0
    for alias in aliases:
        cumulative += weights[alias] / total
        if point < cumulative:
            return alias
    return aliases[-1]  # point within float rounding of 1.0


def _is_missing(exc: Exception) -> bool:
    """An MLflow error meaning "no such prompt or alias" rather than "server unreachable"."""
    return getattr(exc, "error_code", None) in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND")


def _template_of(version) -> tuple[dict[str, str], ...]:
    template = version.template
    if isinstance(template, str):  # a text prompt registered by hand: it becomes the user message
        return ({"role": "user", "content": template},)
    return tuple({"role": str(m["role"]), "content": str(m["content"])} for m in template)


@dataclass
class _Entry:
    prompt: ResolvedPrompt | None  # None: the alias does not exist (a cached miss)
    expires: float


class PromptResolver:
    """Resolves prompts by weighted alias from one MLflow server; thread-safe; one per process."""

    def __init__(self, mlflow_url: str, prompts: PromptSettings, clock: Callable[[], float] = time.monotonic):
        self.mlflow_url = mlflow_url
        self.prompts = prompts
        self._clock = clock
        self._client = mlflow_client(mlflow_url)
        self._cache: dict[tuple[str, str], _Entry] = {}
        self._refreshing: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: RouterBentoSettings) -> PromptResolver:
        return cls(settings.mlflow.url, settings.prompts)

    def resolve(self, name: str | None = None, user_id: str | None = None) -> ResolvedPrompt:
        """The template to use for this request, with its version and the alias that chose it."""
        name = name or self.prompts.name
        alias = choose_alias(self.prompts.ab_weights, name, user_id)
        prompt = self.load(name, alias)
        if prompt is None and alias != self.prompts.alias:
            log.warning("prompt %s has no alias %r; using %r", name, alias, self.prompts.alias)
            prompt = self.load(name, self.prompts.alias)
        if prompt is not None:
            return prompt
        if name == self.prompts.name:
            return ResolvedPrompt(name, None, BUILTIN_ALIAS, RAG_TEMPLATE)
        raise PromptUnavailable(
            f"prompt {name!r} has neither alias {alias!r} nor {self.prompts.alias!r} in MLflow at {self.mlflow_url}"
        )

    def load(self, name: str, alias: str) -> ResolvedPrompt | None:
        """The version `name@alias` points at, from the cache while fresh; None if the alias is unset."""
        key = (name, alias)
        now = self._clock()
        with self._lock:
            entry = self._cache.get(key)
            if entry is not None and (entry.expires > now or key in self._refreshing):
                return entry.prompt  # fresh, or another thread is refreshing it: the last value serves
            self._refreshing.add(key)
        ttl = self.prompts.cache_ttl_s
        try:
            prompt = self._fetch(name, alias)
        except Exception as exc:  # noqa: BLE001 - unreachable or erroring server: keep serving what we had
            log.warning("MLflow at %s: loading prompt %s@%s failed (%s)", self.mlflow_url, name, alias, exc)
            prompt = entry.prompt if entry is not None else None
            # A failed fetch costs seconds of MLflow's retries: at most one request per back-off pays it.
            ttl = max(ttl, FAILURE_BACKOFF_S)
        finally:
            with self._lock:
                self._refreshing.discard(key)
        with self._lock:
            self._cache[key] = _Entry(prompt, self._clock() + ttl)
        return prompt

    def _fetch(self, name: str, alias: str) -> ResolvedPrompt | None:
        try:
            version = self._client.get_prompt_version_by_alias(name, alias)
        except Exception as exc:
            if _is_missing(exc):
                return None
            raise
        return ResolvedPrompt(name, int(version.version), alias, _template_of(version))


def seed_prompts(settings: RouterBentoSettings) -> ResolvedPrompt:
    """Register the built-in RAG prompt and point the default alias at it, unless the alias exists.

    Idempotent: with the alias already set (by an earlier run, or moved by hand) nothing changes.
    Returns the version the default alias points at.
    """
    p = settings.prompts
    client = mlflow_client(settings.mlflow.url)
    try:
        current = client.get_prompt_version_by_alias(p.name, p.alias)
        return ResolvedPrompt(p.name, int(current.version), p.alias, _template_of(current))
    except Exception as exc:
        if not _is_missing(exc):
            raise
    version = client.register_prompt(
        name=p.name,
        template=[dict(m) for m in RAG_TEMPLATE],
        commit_message="ragyard's built-in RAG prompt (seeded)",
        tags={"ragyard.variables": ",".join(RAG_VARIABLES)},
    )
    client.set_prompt_alias(p.name, p.alias, int(version.version))
    log.info("seeded prompt %s version %s as @%s", p.name, version.version, p.alias)
    return ResolvedPrompt(p.name, int(version.version), p.alias, RAG_TEMPLATE)


_resolvers: dict[tuple[str, str], PromptResolver] = {}
_resolvers_lock = threading.Lock()


def resolve_prompt(name: str | None, user_id: str | None, settings: RouterBentoSettings) -> ResolvedPrompt:
    """`PromptResolver.resolve` through one resolver per (MLflow URL, prompt settings) in this process."""
    key = (settings.mlflow.url, settings.prompts.model_dump_json())
    with _resolvers_lock:
        resolver = _resolvers.get(key)
        if resolver is None:
            resolver = _resolvers[key] = PromptResolver.from_settings(settings)
    return resolver.resolve(name, user_id)
