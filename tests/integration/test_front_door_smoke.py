"""The smallest real front door: the LLM bento (SmolLM2) behind the router bento, a key made by the
CLI, and the official `openai` client used the way its own documentation shows, whole and streamed.

`make lock-check` runs this file in a scratch environment with the newest versions pyproject.toml
allows: an upgrade that breaks the client, the router or the LLM bento fails here before it is
adopted. `make test` leaves it out: test_router_bento.py covers the same path.
"""

import os

import openai
import pytest

from ragyard.settings import (
    CatalogModel,
    LLMSettings,
    MlflowSettings,
    RouterSettings,
    Settings,
    settings_env,
)
from tests.support.cli import ragyard
from tests.support.network import free_port
from tests.support.stack import Stack

MODEL = "smol"


@pytest.fixture(scope="module")
def front_door(tmp_path_factory, smollm2_path):
    home = tmp_path_factory.mktemp("front-door")
    settings = Settings(
        home=home,
        llm=LLMSettings(
            port=free_port(),
            n_threads=1,
            probe_tokens=4,
            models=[CatalogModel(name=MODEL, model=str(smollm2_path), context_length=2048)],
        ),
        # Only the model: no safety, no cache; traces go nowhere (no MLflow server here).
        router=RouterSettings(safety_enabled=False, cache_enabled=False),
        mlflow=MlflowSettings(url=f"http://127.0.0.1:{free_port()}", run_local=False),
    )
    with Stack(home) as stack:
        settings.llm.url = stack.bento("bentos.llm.service:LLM", env=_env(settings), timeout_s=300)
        router_url = stack.bento("bentos.router.service:Router", env=_env(settings))
        made = ragyard("keys", "create", "--name", "smoke", env={**os.environ, **_env(settings)}, check=True)
        key = made.stdout.strip().splitlines()[-1]
        yield openai.OpenAI(base_url=f"{router_url}/v1", api_key=key, max_retries=2, timeout=120)


def _env(settings: Settings) -> dict[str, str]:
    # The router's state (its keys) under the settings' home, which the CLI shares; no MLflow retries.
    return {**settings_env(settings), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}


def test_a_chat_through_the_router_with_the_official_client(front_door):
    answer = front_door.chat.completions.create(
        model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "Say hello."}]
    )
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].message.content.strip()
    assert answer.choices[0].finish_reason in ("stop", "length")
    assert answer.usage.completion_tokens > 0 and answer.usage.prompt_tokens > 0
    assert answer.model_extra["ragyard"]["cost"]["amount"] > 0


def test_a_streamed_chat_through_the_router_with_the_official_client(front_door):
    stream = front_door.chat.completions.create(
        model=MODEL, max_tokens=8, stream=True, messages=[{"role": "user", "content": "Count to three."}]
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text.strip()
