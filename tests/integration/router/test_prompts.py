"""The RAG prompt in a real MLflow prompt registry: seeding, aliases, the sticky A/B split, outages."""

import logging
import uuid
from collections import Counter

import pytest

from ragyard.services import mlflow_spec
from ragyard.settings import MlflowSettings, PromptSettings, Settings
from ragyard.tracking import mlflow_client
from router.prompts import (
    BUILTIN_ALIAS,
    FAILURE_BACKOFF_S,
    RAG_TEMPLATE,
    PromptResolver,
    PromptUnavailable,
    resolve_prompt,
    seed_prompts,
)
from tests.support.network import free_port
from tests.support.stack import Stack


class Clock:
    """A hand-moved monotonic clock, so TTL expiry is tested without sleeping."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def prompt_settings(mlflow_url: str, **prompts) -> Settings:
    name = f"rag-{uuid.uuid4().hex[:8]}"
    return Settings(
        mlflow=MlflowSettings(url=mlflow_url, run_local=False), prompts=PromptSettings(name=name, **prompts)
    )


def register_version(settings: Settings, marker: str) -> int:
    template = [dict(m) for m in RAG_TEMPLATE]
    template[0]["content"] = f"{marker}\n" + template[0]["content"]
    return int(mlflow_client(settings.mlflow.url).register_prompt(settings.prompts.name, template).version)


def test_seed_registers_once_and_the_alias_loads_through_mlflow(mlflow_server):
    settings = prompt_settings(mlflow_server)
    seeded = seed_prompts(settings)
    assert (seeded.version, seeded.alias) == (1, "production")
    assert seed_prompts(settings).version == 1  # idempotent: no second version
    client = mlflow_client(mlflow_server)
    assert [int(v.version) for v in client.search_prompt_versions(settings.prompts.name)] == [1]

    # MLflow's own API sees the same thing the router does
    loaded = client.load_prompt(f"prompts:/{settings.prompts.name}@production", cache_ttl_seconds=0)
    assert loaded.version == 1 and loaded.variables == {"context", "question"}
    resolved = PromptResolver.from_settings(settings).resolve(user_id="alice")
    assert (resolved.name, resolved.version, resolved.alias) == (settings.prompts.name, 1, "production")
    assert resolved.uri == f"prompts:/{settings.prompts.name}/1"
    assert resolved.template == RAG_TEMPLATE
    assert resolve_prompt(settings.prompts.name, "alice", settings).version == 1


def test_a_moved_alias_takes_effect_when_the_cache_expires(mlflow_server):
    settings = prompt_settings(mlflow_server, cache_ttl_s=5.0)
    seed_prompts(settings)
    clock = Clock()
    resolver = PromptResolver(settings.mlflow.url, settings.prompts, clock=clock)
    assert resolver.resolve(user_id="u").version == 1

    v2 = register_version(settings, "VERSION TWO")
    mlflow_client(mlflow_server).set_prompt_alias(settings.prompts.name, "production", v2)
    clock.now += 4.0
    assert resolver.resolve(user_id="u").version == 1  # still cached
    clock.now += 1.5
    moved = resolver.resolve(user_id="u")
    assert (moved.version, moved.alias) == (2, "production")
    assert moved.render(context="[1] x", question="q")[0]["content"].startswith("VERSION TWO")


def test_ab_aliases_split_users_stickily_between_two_versions(mlflow_server):
    settings = prompt_settings(mlflow_server, ab_weights={"production": 0.7, "candidate": 0.3})
    seed_prompts(settings)
    candidate = register_version(settings, "CANDIDATE")
    mlflow_client(mlflow_server).set_prompt_alias(settings.prompts.name, "candidate", candidate)
    resolver = PromptResolver.from_settings(settings)

    users = [f"user-{i}" for i in range(2000)]
    chosen = {u: resolver.resolve(user_id=u) for u in users}
    by_alias = Counter(p.alias for p in chosen.values())
    assert by_alias["candidate"] / len(users) == pytest.approx(0.3, abs=0.04)
    assert all(p.version == (candidate if p.alias == "candidate" else 1) for p in chosen.values())
    assert all(resolver.resolve(user_id=u).alias == chosen[u].alias for u in users[:300])  # sticky


def test_a_missing_ab_alias_falls_back_to_the_default_alias(mlflow_server):
    settings = prompt_settings(mlflow_server, ab_weights={"never-set": 1.0})
    seed_prompts(settings)
    resolved = PromptResolver.from_settings(settings).resolve(user_id="bob")
    assert (resolved.version, resolved.alias) == (1, "production")
    with pytest.raises(PromptUnavailable, match="no-such-prompt"):
        PromptResolver.from_settings(settings).resolve(name="no-such-prompt", user_id="bob")


def test_with_mlflow_down_the_last_version_serves_and_before_that_the_builtin(tmp_path, caplog):
    settings = Settings(
        home=tmp_path,
        mlflow=MlflowSettings(url=f"http://127.0.0.1:{free_port()}"),
        prompts=PromptSettings(cache_ttl_s=1.0),
    )
    never_loaded = PromptResolver.from_settings(settings)
    clock = Clock()
    resolver = PromptResolver(settings.mlflow.url, settings.prompts, clock=clock)
    with Stack(settings.home) as stack:  # an MLflow server of this test's own, to stop
        stack.start(mlflow_spec(settings))
        seed_prompts(settings)
        assert resolver.resolve(user_id="carol").version == 1
    clock.now += 10  # expired, and the server is gone
    assert resolver.resolve(user_id="carol").version == 1
    resolved = never_loaded.resolve(user_id="carol")
    assert (resolved.version, resolved.alias, resolved.template) == (None, BUILTIN_ALIAS, RAG_TEMPLATE)
    assert resolved.uri is None

    # the failure is remembered for the back-off: MLflow is not asked again until it ends
    with caplog.at_level(logging.WARNING, logger="router.prompts"):
        caplog.clear()
        clock.now += FAILURE_BACKOFF_S - 1
        assert resolver.resolve(user_id="carol").version == 1
        assert not caplog.records
        clock.now += 2
        assert resolver.resolve(user_id="carol").version == 1
        assert "loading prompt" in caplog.text
