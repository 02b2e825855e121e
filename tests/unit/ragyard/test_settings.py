"""Settings per component: each deployable parses only its own groups (and the endpoints of the bentos
it calls), so a bad value elsewhere cannot stop it; `Settings` is every group."""

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsError

from ragyard import settings as s
from tests.support.bad_settings import BAD

COMPONENTS = [
    s.EmbedderBentoSettings,
    s.RetrieverBentoSettings,
    s.LLMBentoSettings,
    s.SafetyBentoSettings,
    s.RouterBentoSettings,
    s.ToolsBentoSettings,
    s.MemoryBentoSettings,
    s.ReviewBentoSettings,
    s.IngestionSettings,
    s.Settings,
]
ENDPOINTS = (
    s.EmbedderEndpoint,
    s.RetrieverEndpoint,
    s.LLMEndpoint,
    s.SafetyEndpoint,
    s.RouterEndpoint,
    s.ToolsEndpoint,
    s.MemoryEndpoint,
    s.ReviewEndpoint,
)


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
