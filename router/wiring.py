"""The wiring of the gateway: every collaborator of the flow, built once from the router's settings.

`build_flow` is the one place that knows which store, client and policy each step gets; tests and
other entry points that need a flow call it too.
"""

from __future__ import annotations

import contextlib

import httpx

from ragyard.clients.embedder import EmbedderClient
from ragyard.clients.memory import MemoryClient
from ragyard.clients.retriever import RetrieverClient
from ragyard.clients.safety import SafetyClient
from ragyard.settings import RouterBentoSettings
from router.cache import ResponseCache
from router.catalog import Catalog, Upstream
from router.events import RouterEvents
from router.flow import Flow
from router.generation import Generator
from router.guardrails import Guardrails
from router.index_version import IndexVersion
from router.keys import KeyStore
from router.limits import Limits
from router.memory import Memory
from router.pinned import PinnedAnswers
from router.prompts import PromptResolver
from router.resilience import Breakers
from router.state import database
from router.steps.accounting import Accounting
from router.steps.cache import CacheStep
from router.steps.generation import GenerationStep
from router.steps.long_term_memory import LongTermMemory
from router.steps.memory import ConversationMemory
from router.steps.prompt import PromptStep
from router.steps.retrieval import Retrieval
from router.steps.routing import Routing
from router.steps.safety import SafetyChecks
from router.steps.tool_calls import ToolCallChecks
from router.tracing import Tracer, tracer_from_settings


def build_flow(settings: RouterBentoSettings, tracer: Tracer | None = None) -> Flow:
    config = settings.router
    resources = contextlib.AsyncExitStack()
    # One connection pool for every bento the router calls; each call has its own timeout.
    pool = httpx.AsyncClient(timeout=30.0, limits=httpx.Limits(max_connections=200))
    resources.push_async_callback(pool.aclose)
    tracer = tracer or tracer_from_settings(settings)
    resources.callback(tracer.close)
    keys = KeyStore(database(settings, "keys"))
    # Started by the service in its serving event loop (RouterEvents.start); closed with the flow.
    events = RouterEvents(settings, tracer.exporter)
    resources.push_async_callback(events.close)
    upstreams = [
        Upstream(url.rstrip("/"), config.upstream_api_key) for url in [settings.llm.url, *config.extra_upstreams]
    ]
    retriever = RetrieverClient(settings.retriever.url, pool)
    cache = ResponseCache(
        database(settings, "cache"), config.cache_ttl_s, config.cache_max_entries, config.semantic_threshold
    )
    guardrails = (
        Guardrails(
            SafetyClient(settings.safety.url, timeout_s=config.safety_timeout_s, pool=pool), config.safety_policy
        )
        if config.safety_enabled
        else None
    )
    generator = Generator(
        Breakers(config.breaker_failures, config.breaker_reset_s), config.llm_attempts, config.first_token_timeout_s
    )
    # One try per recall: a memory bento that is down costs the answer its memories, not its time.
    long_term = LongTermMemory(
        MemoryClient(settings.memory.url, pool, attempts=1) if config.long_term_memory else None, config
    )
    resources.push_async_callback(long_term.aclose)
    return Flow(
        config=config,
        routing=Routing(Catalog(upstreams, config, pool), settings),
        memory=ConversationMemory(
            Memory(database(settings, "memory"), config.memory_turns, config.memory_sessions_max)
        ),
        long_term=long_term,
        prompts=PromptStep(PromptResolver.from_settings(settings), config),
        accounting=Accounting(Limits(keys), config),
        safety=SafetyChecks(guardrails, config),
        cache=CacheStep(
            cache,
            PinnedAnswers(database(settings, "cache")),
            EmbedderClient(settings.embedder.url, pool=pool),
            IndexVersion(retriever, config.index_version_ttl_s),
            config,
        ),
        retrieval=Retrieval(retriever, config),
        generation=GenerationStep(generator),
        tool_calls=ToolCallChecks(guardrails, config),
        tracer=tracer,
        keys=keys,
        events=events,
        resources=resources,
    )
