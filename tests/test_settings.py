"""Settings per component: each deployable parses only its own groups (and the endpoints of the bentos
it calls), so a bad value elsewhere cannot stop it; `Settings` is every group."""

import httpx
import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsError

from ragyard import settings as s
from tests.conftest import free_port, serving_bento

# One bad value per group, in a field that is not part of a bento's endpoint (port, URL).
BAD = {
    "milvus": ("RAGYARD_MILVUS__COLLECTION", "no spaces allowed"),
    "embedder": ("RAGYARD_EMBEDDER__BATCH_SIZE", "0"),
    "retriever": ("RAGYARD_RETRIEVER__RRF_K", "0"),
    "llm": ("RAGYARD_LLM__MODELS", "[{}]"),
    "safety": ("RAGYARD_SAFETY__POLICIES", "{}"),
    "router": ("RAGYARD_ROUTER__TOP_K", "0"),
    "tools": ("RAGYARD_TOOLS__MCP_SERVERS", '[{"name": "both-or-neither"}]'),
    "langfuse": ("RAGYARD_LANGFUSE", "not json"),
    "chunker": ("RAGYARD_CHUNKER__MAX_CHARS", "1"),
    "prompts": ("RAGYARD_PROMPTS__AB_WEIGHTS", '{"production": -1}'),
    "evals": ("RAGYARD_EVALS__GATE_MODE", "sideways"),
    "ingest": ("RAGYARD_INGEST__SOURCES", "not json"),
    "mlflow": ("RAGYARD_MLFLOW__RUN_LOCAL", "perhaps"),
    "dagster": ("RAGYARD_DAGSTER__PORT", "x"),
    "supervisor": ("RAGYARD_SUPERVISOR__MAX_CRASHES", "0"),
    "broker": ("RAGYARD_BROKER__URL", "http://not-amqp"),
}
COMPONENTS = [s.EmbedderBentoSettings, s.RetrieverBentoSettings, s.LLMBentoSettings, s.SafetyBentoSettings,
              s.RouterBentoSettings, s.ToolsBentoSettings, s.IngestionSettings, s.Settings]
ENDPOINTS = (s.EmbedderEndpoint, s.RetrieverEndpoint, s.LLMEndpoint, s.SafetyEndpoint, s.RouterEndpoint, s.ToolsEndpoint)


def parses_whole(component, group: str) -> bool:
    """The component parses every field of the group (not just a bento's endpoint, not nothing)."""
    field = component.model_fields.get(group)
    return field is not None and field.annotation not in ENDPOINTS


def test_every_group_has_a_bad_value_here():
    assert set(BAD) == set(s.Settings.model_fields) - {"home"}


@pytest.mark.parametrize("component", COMPONENTS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("group", BAD)
def test_a_component_refuses_a_bad_value_of_its_own_groups_only(component, group, monkeypatch):
    monkeypatch.setenv(*BAD[group])
    if parses_whole(component, group):
        with pytest.raises((ValidationError, SettingsError)):
            component()
    else:
        component()


def test_settings_is_every_component():
    assert all(issubclass(s.Settings, component) for component in COMPONENTS)
    assert {group for component in COMPONENTS for group in component.model_fields} == set(s.Settings.model_fields)


def test_the_router_reads_only_the_endpoints_of_the_bentos_it_calls(monkeypatch):
    monkeypatch.setenv("RAGYARD_LLM__PORT", "4123")
    monkeypatch.setenv("RAGYARD_SAFETY__URL", "http://safety.example:3004")
    router = s.RouterBentoSettings()
    assert router.llm.url == "http://127.0.0.1:4123" and router.safety.url == "http://safety.example:3004"
    assert not hasattr(router.llm, "models") and not hasattr(router, "ingest")


def test_the_router_bento_serves_with_every_other_group_broken(tmp_path):
    """The cheapest bento to start (no model): bad values of every group but its own do not stop it,
    and it reads its own group and the LLM's endpoint."""
    llm_port = free_port()  # nothing listens there
    env = {name: value for group, (name, value) in BAD.items() if group not in ("router", "prompts", "langfuse",
                                                                             "mlflow", "broker")}
    env |= {"RAGYARD_ROUTER__REQUIRE_API_KEY": "false", "RAGYARD_LLM__PORT": str(llm_port)}
    with serving_bento("bentos.router.service:Router", tmp_path / "home", env) as url:
        models = httpx.get(f"{url}/v1/models", timeout=30)
    # No key needed (its own group), and the LLM upstream it asked is the configured endpoint.
    assert models.status_code == 503, models.text
    assert f"http://127.0.0.1:{llm_port}" in models.json()["error"]["message"]
