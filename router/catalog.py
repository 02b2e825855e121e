"""The model catalog: every model the OpenAI-compatible upstreams serve, with prices.

The LLM bento's `GET /v1/models` carries `context_length`, `pricing` {input_per_1k, output_per_1k,
currency}, `quality`, `backend` and `supports_tools` per model; other upstreams (llama.cpp's server, providers) carry
none, so prices then come from `router.prices` or `router.default_price` in the settings.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import httpx

from ragyard.clients.base import ServiceClient
from ragyard.kit.errors import Unavailable
from ragyard.settings import RouterSettings
from router.routing.base import ModelCard

logger = logging.getLogger("ragyard.router.catalog")


@dataclass(frozen=True)
class Upstream:
    """An OpenAI-compatible server: its base URL (without /v1) is also its circuit-breaker key."""

    url: str
    api_key: str


@dataclass(frozen=True)
class CatalogEntry:
    card: ModelCard
    upstream: Upstream
    backend: str
    currency: str
    supports_tools: bool = True  # chooses among offered tools (an upstream that does not say: yes)


def card_from_model_object(obj: dict, settings: RouterSettings) -> tuple[ModelCard, str, str]:
    """A ModelCard (and backend, currency) from one /v1/models object, prices defaulted by settings."""
    name = obj["id"]
    pricing = obj.get("pricing") or {}
    fallback = settings.prices.get(name, settings.default_price)
    card = ModelCard(
        name=name,
        context_length=int(obj.get("context_length") or settings.default_context_length),
        input_per_1k=float(pricing.get("input_per_1k", fallback.input_per_1k)),
        output_per_1k=float(pricing.get("output_per_1k", fallback.output_per_1k)),
        quality=float(obj["quality"]) if obj.get("quality") is not None else None,
    )
    return card, str(obj.get("backend") or "openai-compatible"), str(pricing.get("currency", settings.currency))


class Catalog:
    """Models of all upstreams (first upstream wins a name), refreshed every `catalog_ttl_s`."""

    def __init__(self, upstreams: list[Upstream], settings: RouterSettings, pool: httpx.AsyncClient):
        self.upstreams = upstreams
        self.settings = settings
        # One call per refresh, no retries: an upstream that fails keeps what it served before until
        # the next refresh, and its breaker decides whether generations go to it.
        self.clients = {
            u: ServiceClient(
                "LLM upstream",
                u.url,
                timeout_s=5.0,
                attempts=1,
                pool=pool,
                headers={"Authorization": f"Bearer {u.api_key}"},
            )
            for u in upstreams
        }
        self.entries: dict[str, CatalogEntry] = {}
        self.loaded_at = 0.0
        self.lock = asyncio.Lock()

    async def _fetch(self, upstream: Upstream) -> list[dict]:
        return (await self.clients[upstream].arequest("GET", "/v1/models")).json()["data"]

    async def refresh(self) -> None:
        results = await asyncio.gather(*(self._fetch(u) for u in self.upstreams), return_exceptions=True)
        entries: dict[str, CatalogEntry] = {}
        for upstream, result in zip(self.upstreams, results, strict=True):
            if isinstance(result, BaseException):
                logger.warning("catalog: %s/v1/models failed: %r", upstream.url, result)
                # Keep what this upstream served before: its breaker decides whether to call it.
                entries.update({n: e for n, e in self.entries.items() if e.upstream == upstream and n not in entries})
                continue
            for obj in result:
                card, backend, currency = card_from_model_object(obj, self.settings)
                entries.setdefault(
                    card.name, CatalogEntry(card, upstream, backend, currency, bool(obj.get("supports_tools", True)))
                )
        if entries:
            self.entries = entries
            self.loaded_at = time.monotonic()

    async def current(self) -> dict[str, CatalogEntry]:
        if not self.entries or time.monotonic() - self.loaded_at > self.settings.catalog_ttl_s:
            async with self.lock:
                if not self.entries or time.monotonic() - self.loaded_at > self.settings.catalog_ttl_s:
                    await self.refresh()
        if not self.entries:
            raise Unavailable("no LLM upstream answered GET /v1/models: " + ", ".join(u.url for u in self.upstreams))
        return self.entries
