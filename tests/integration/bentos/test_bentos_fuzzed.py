"""Every bento's OpenAPI document fuzzed with schemathesis: malformed requests get a 4xx, never a 5xx.

One stack of real `bentoml serve` processes (embedder, retriever on a small index in milvus-lite,
the LLM bento with SmolLM2, safety, the router, tools), and schemathesis' own CLI against each bento's
`/docs.json` with the `not_a_server_error` check, in all its phases (the coverage phase sends the
malformed Content-Types that once got 500s). Each bento gets a bounded number of cases (a few
hundred) and a fixed seed, so a run is repeatable and the suite stays lean.

BentoML labels every `/docs.json` OpenAPI 3.0.2 but writes the schemas as pydantic makes them, in
OpenAPI 3.1's JSON Schema (an exclusive bound such as `top_p > 0` is a number, where 3.0 has a
flag): read as 3.0, schemathesis cannot generate bodies for the chat completions. The test hands
it each document labelled as what it is, 3.1.0; the requests still go to the bento.

The router is fuzzed with a key whose budget is zero: every well-formed chat stops at the budget
(a 429) before it reaches the other bentos or a model, so what is fuzzed is the router's own
validation, authentication and refusals; the other bentos serve for real. The tools bento is
fuzzed with the same key (tools are not budgeted): its built-in tools run (the calculator, the
knowledge search through the retriever), so malformed arguments reach the tools themselves.
"""

import json
import os
import re
import subprocess
import sys

import httpx
import pytest

from ragyard.settings import (
    CatalogModel,
    EmbedderSettings,
    LLMSettings,
    MlflowSettings,
    RetrieverSettings,
    SafetySettings,
    ToolsSettings,
    settings_env,
)
from tests.support.cli import ragyard
from tests.support.ingest import indexed_corpus
from tests.support.network import free_port
from tests.support.stack import Stack

EXAMPLES_PER_OPERATION = 25  # the fuzzing phase's; the examples and coverage phases add their own
BENTOS = {
    "embedder": "bentos.embedder.service:Embedder",
    "retriever": "bentos.retriever.service:Retriever",
    "llm": "bentos.llm.service:LLM",
    "safety": "bentos.safety.service:Safety",
    "router": "bentos.router.service:Router",
    "tools": "bentos.tools.service:Tools",
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, milvus_uri, smollm2_path):
    """The six bentos on free ports; yields their URLs and the environment they run with."""
    root = tmp_path_factory.mktemp("fuzzed")
    settings = indexed_corpus(
        root,
        milvus_uri,
        count=2,
        # Nothing listens here: prompts fall back to the built-in template, traces are dropped.
        mlflow=MlflowSettings(url=f"http://127.0.0.1:{free_port()}", run_local=False),
    )
    settings.embedder = EmbedderSettings(port=free_port())
    settings.retriever = RetrieverSettings(port=free_port())
    settings.safety = SafetySettings(port=free_port())
    settings.tools = ToolsSettings(port=free_port())
    # A short cap keeps every generation the fuzzer asks for short.
    settings.llm = LLMSettings(
        port=free_port(),
        n_threads=1,
        probe_tokens=4,
        max_tokens=4,
        models=[CatalogModel(name="smol", model=str(smollm2_path), context_length=2048)],
    )
    env = {**settings_env(settings), "BENTOML_HOME": str(root / "bentoml"), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    ports = {
        "embedder": settings.embedder.port,
        "retriever": settings.retriever.port,
        "llm": settings.llm.port,
        "safety": settings.safety.port,
        "router": free_port(),
        "tools": settings.tools.port,
    }
    with Stack(root) as services:
        services.start(
            *(
                services.bento_spec(target, name=name, env=env, port=ports[name], timeout_s=300)
                for name, target in BENTOS.items()
            )
        )
        yield {"urls": {name: services.url(name) for name in BENTOS}, "env": env}


def zero_budget_key(env: dict[str, str]) -> str:
    made = ragyard("keys", "create", "--name", "fuzz", "--budget", "0", "--json", env={**os.environ, **env}, check=True)
    return json.loads(made.stdout)["key"]


@pytest.mark.parametrize("bento", list(BENTOS))
def test_malformed_requests_get_a_4xx_never_a_5xx(stack, bento, tmp_path):
    url = stack["urls"][bento]
    document = httpx.get(f"{url}/docs.json", timeout=30).json()
    assert document["openapi"] == "3.0.2"  # when BentoML labels it rightly, hand it over as it is
    (tmp_path / "openapi.json").write_text(json.dumps({**document, "openapi": "3.1.0"}))
    auth = (
        ["--header", f"Authorization: Bearer {zero_budget_key(stack['env'])}"] if bento in ("router", "tools") else []
    )
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            "openapi.json",
            "--url",
            url,
            "--checks",
            "not_a_server_error",
            "--max-examples",
            str(EXAMPLES_PER_OPERATION),
            "--seed",
            "20261207",
            "--workers",
            "1",
            "--request-timeout",
            "120",
            "--suppress-health-check",
            "all",
            "--generation-database",
            "none",
            "--no-color",
            *auth,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert run.returncode == 0, f"schemathesis against the {bento} bento:\n{run.stdout[-8000:]}\n{run.stderr[-2000:]}"
    generated = re.search(r"(\d+) generated", run.stdout)
    assert generated and int(generated.group(1)) > 50, run.stdout[-3000:]  # it did fuzz the bento's API
