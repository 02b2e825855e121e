"""Settings per component, in a real bento: bad values of the groups a bento does not read cannot stop it."""

import httpx

from tests.support.bad_settings import BAD
from tests.support.network import free_port
from tests.support.stack import Stack


def test_the_router_bento_serves_with_every_other_group_broken(tmp_path):
    """The cheapest bento to start (no model): bad values of every group but its own do not stop it,
    and it reads its own group and the LLM's endpoint."""
    llm_port = free_port()  # nothing listens there
    env = {
        name: value
        for group, (name, value) in BAD.items()
        if group not in ("router", "prompts", "langfuse", "mlflow", "broker")
    }
    env |= {"RAGYARD_ROUTER__REQUIRE_API_KEY": "false", "RAGYARD_LLM__PORT": str(llm_port)}
    with Stack(tmp_path) as stack:
        url = stack.bento("bentos.router.service:Router", env=env)
        models = httpx.get(f"{url}/v1/models", timeout=30)
    # No key needed (its own group), and the LLM upstream it asked is the configured endpoint.
    assert models.status_code == 503, models.text
    assert f"http://127.0.0.1:{llm_port}" in models.json()["error"]["message"]
