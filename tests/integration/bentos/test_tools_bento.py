"""The tools bento as a real `bentoml serve` process: REST and MCP (the official `mcp` client), per-key
access, bad input, and real MCP servers mounted into it (streamable HTTP and stdio, written with the
SDK in tests/support/mcp_demo_server.py) that die and come back."""

from __future__ import annotations

import asyncio
import http.server
import json
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from ragyard.clients.tools import ToolsClient
from ragyard.contracts.tools import KEY_ID_HEADER
from ragyard.kit.errors import Rejected
from ragyard.service_spec import ServiceSpec
from ragyard.settings import ToolsBentoSettings
from router.keys import KeyStore
from router.state import database
from tests.support.network import free_port
from tests.support.paths import REPO_ROOT
from tests.support.stack import Stack

MAX_RESULT_CHARS = 2000
SQL_MAX_ROWS = 5


@dataclass
class Keys:
    full: str  # may use everything
    narrow: str  # not sql_query, nor the HTTP server's tools
    narrow_id: str
    revoked: str
    revoked_id: str


@dataclass
class ToolsBento:
    url: str
    keys: Keys
    services: Stack  # the bento ("tools") and the MCP server it mounts over HTTP ("mcp-demo")
    demo: ServiceSpec
    secret_port: int = 0  # a loopback server the fetch tool must never reach

    def start_demo(self) -> None:
        self.services.start(self.demo)

    def kill_demo(self) -> None:
        self.services.kill(self.demo.name)


def demo_http_spec(port: int) -> ServiceSpec:
    """The demo MCP server over streamable HTTP (tests/support/mcp_demo_server.py)."""
    return ServiceSpec(
        name="mcp-demo",
        argv=[sys.executable, "-m", "tests.support.mcp_demo_server", "http", str(port)],
        health_tcp=("127.0.0.1", port),
        cwd=str(REPO_ROOT),
        startup_timeout_s=30,
    )


@contextmanager
def secret_server() -> Iterator[int]:
    """An HTTP server on 127.0.0.1 holding a secret: what SSRF would reach."""

    class Secret(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"the secret")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Secret)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def make_database(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT, price REAL)")
        conn.executemany(
            "INSERT INTO products (name, price) VALUES (?, ?)", [(f"product {i}", i * 1.5) for i in range(1, 21)]
        )


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[ToolsBento]:
    root = tmp_path_factory.mktemp("tools")
    home = root / "home"
    store = KeyStore(database(ToolsBentoSettings(home=home), "keys"))
    full, full_key = store.create("full")
    narrow, narrow_key = store.create("narrow")
    revoked, revoked_key = store.create("revoked")
    store.revoke(revoked.id)
    store.close()
    make_database(root / "shop.db")
    demo_port = free_port()
    only_full = {"allowed_keys": [full.id]}
    env = {
        "RAGYARD_HOME": str(home),
        "BENTOML_HOME": str(root / "bentoml"),
        "RAGYARD_RETRIEVER__URL": f"http://127.0.0.1:{free_port()}",  # nothing listens: the knowledge base is down
        "RAGYARD_TOOLS__MAX_RESULT_CHARS": str(MAX_RESULT_CHARS),
        "RAGYARD_TOOLS__SQL_URL": f"sqlite:///{root / 'shop.db'}",
        "RAGYARD_TOOLS__SQL_MAX_ROWS": str(SQL_MAX_ROWS),
        "RAGYARD_TOOLS__FETCH_HOSTS": json.dumps(["localhost", "loopback.test", "metadata.test"]),
        "RAGYARD_TOOLS__FETCH_RESOLVE": json.dumps(
            {"loopback.test": ["127.0.0.1"], "metadata.test": ["169.254.169.254"]}
        ),
        "RAGYARD_TOOLS__POLICIES": json.dumps(
            {"sql_query": {**only_full, "timeout_s": 1}, "calculator": {"cost": 0.002, "timeout_s": 2}}
        ),
        "RAGYARD_TOOLS__MCP_SERVERS": json.dumps(
            [
                {"name": "web", "url": f"http://127.0.0.1:{demo_port}/mcp", **only_full},
                {
                    "name": "local",
                    "command": sys.executable,
                    "args": ["-m", "tests.support.mcp_demo_server", "stdio"],
                    "cwd": str(REPO_ROOT),
                    "timeout_s": 2,
                },
                {"name": "ghost", "url": f"http://127.0.0.1:{free_port()}/mcp"},  # never up
            ]
        ),
        "RAGYARD_TOOLS__MCP_PROBE_INTERVAL_S": "0.5",
        "RAGYARD_TOOLS__MCP_RECONNECT_MAX_S": "1",
    }
    keys = Keys(full_key, narrow_key, narrow.id, revoked_key, revoked.id)
    with Stack(root) as services, secret_server() as secret_port:
        demo = demo_http_spec(demo_port)
        services.start(demo)
        stack = ToolsBento(services.bento("bentos.tools.service:Tools", env=env), keys, services, demo, secret_port)
        wait_for(lambda: {"web__add", "local__add"} <= listed(stack), "both mounted servers listed")
        services.refresh()  # the stdio MCP server the bento has started, for the stack to stop too
        yield stack


def wait_for(condition, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout_s} s: {what}")
        time.sleep(0.2)


def listed(stack: ToolsBento, key: str | None = None) -> set[str]:
    response = httpx.get(
        f"{stack.url}/v1/tools", headers={"Authorization": f"Bearer {key or stack.keys.full}"}, timeout=30
    )
    assert response.status_code == 200, response.text
    return {tool["function"]["name"] for tool in response.json()["tools"]}


def call(
    stack: ToolsBento, name: str, arguments: dict | None = None, key: str | None = None, **headers
) -> httpx.Response:
    auth = {"Authorization": f"Bearer {key or stack.keys.full}"} if not headers else {}
    return httpx.post(
        f"{stack.url}/v1/tools/{name}", json={"arguments": arguments or {}}, headers={**auth, **headers}, timeout=60
    )


def error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    return response.json()["error"]


# ---- listing and access -----------------------------------------------------------------------------


def test_the_listing_is_openai_tools_with_details_and_filtered_per_key(stack):
    response = httpx.get(f"{stack.url}/v1/tools", headers={"Authorization": f"Bearer {stack.keys.full}"}, timeout=30)
    body = response.json()
    by_name = {tool["function"]["name"]: tool for tool in body["tools"]}
    assert {"knowledge_search", "calculator", "sql_query", "http_fetch"} <= set(by_name)
    calculator = by_name["calculator"]
    assert calculator["type"] == "function" and calculator["function"]["parameters"]["required"] == ["expression"]
    assert "products(id, name, price)" in by_name["sql_query"]["function"]["description"]
    details = {d["name"]: d for d in body["details"]}
    assert details["calculator"] == {"name": "calculator", "source": "builtin", "cost": 0.002, "timeout_s": 2.0}
    assert details["local__add"]["source"] == "local" and details["web__add"]["source"] == "web"
    # The narrow key sees neither the SQL tool nor the HTTP server's tools; the ghost server's are never listed.
    narrow = listed(stack, stack.keys.narrow)
    assert "sql_query" not in narrow and not any(n.startswith("web__") for n in narrow)
    assert {"calculator", "local__add"} <= narrow and not any(n.startswith("ghost__") for n in listed(stack))


def test_a_mounted_tool_name_is_made_to_fit_openai(stack):
    names = listed(stack)
    sanitized = [n for n in names if n.startswith("local__docs_search_")]
    assert len(sanitized) == 1 and len(sanitized[0]) <= 64, names
    response = call(stack, sanitized[0], {"query": "mcp"})
    assert response.status_code == 200, response.text
    assert response.json()["result"] == {"result": "found: mcp"}


def test_callers_need_an_active_key(stack):
    assert error(call(stack, "calculator", {"expression": "1"}, key="rg-nope-nope"), 401)["code"] == "invalid_api_key"
    assert error(call(stack, "calculator", {"expression": "1"}, key=stack.keys.revoked), 401)
    missing = httpx.get(f"{stack.url}/v1/tools", timeout=30)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    # The router names the key by its id; an unknown or revoked id is refused as well.
    assert call(stack, "calculator", {"expression": "1"}, **{KEY_ID_HEADER: stack.keys.narrow_id}).status_code == 200
    assert error(call(stack, "calculator", {"expression": "1"}, **{KEY_ID_HEADER: stack.keys.revoked_id}), 401)
    assert error(call(stack, "calculator", {"expression": "1"}, **{KEY_ID_HEADER: "deadbeef"}), 401)


def test_a_key_calling_a_tool_it_may_not_use_is_403(stack):
    body = error(call(stack, "sql_query", {"query": "SELECT 1"}, key=stack.keys.narrow), 403)
    assert body["code"] == "tool_not_allowed" and "sql_query" in body["message"]
    assert error(call(stack, "web__add", {"a": 1, "b": 2}, key=stack.keys.narrow), 403)


# ---- bad input ----------------------------------------------------------------------------------------


def test_an_unknown_tool_is_404(stack):
    body = error(call(stack, "no_such_tool"), 404)
    assert body["code"] == "tool_not_found" and "no_such_tool" in body["message"]


@pytest.mark.parametrize(
    "name,arguments,param",
    [
        ("calculator", {}, "arguments.expression"),
        ("calculator", {"expression": 5}, "arguments.expression"),
        ("calculator", {"expression": "1", "extra": True}, "arguments.extra"),
        ("knowledge_search", {"query": "x", "top_k": 0}, "arguments.top_k"),
        ("knowledge_search", {"query": "x", "filter": {"colour": "red"}}, "arguments.filter.colour"),
        ("local__add", {"a": "two", "b": 2}, "arguments.a"),
    ],
)
def test_arguments_that_fail_the_schema_are_400_naming_the_field(stack, name, arguments, param):
    body = error(call(stack, name, arguments), 400)
    assert body["code"] == "invalid_arguments" and body["param"] == param and body["message"].startswith(param)


def test_a_body_that_is_not_a_call_is_400(stack):
    not_json = httpx.post(
        f"{stack.url}/v1/tools/calculator",
        content=b"{not json",
        headers={"Authorization": f"Bearer {stack.keys.full}", "Content-Type": "application/json"},
    )
    body = error(not_json, 400)
    assert body["code"] == "invalid_json" and body["message"].startswith("body:")
    not_an_object = httpx.post(
        f"{stack.url}/v1/tools/calculator",
        json={"arguments": [1, 2]},
        headers={"Authorization": f"Bearer {stack.keys.full}"},
    )
    assert error(not_an_object, 400)["param"] == "arguments"


def test_a_tool_that_hangs_times_out_with_504_and_its_server_stays_usable(stack):
    # The tool would answer "woke up" after 30 s; the policy's 2 s timeout answers first.
    body = error(call(stack, "local__slow", {"seconds": 30}), 504)
    assert body["code"] == "tool_timeout" and "2 s" in body["message"]
    assert call(stack, "local__add", {"a": 1, "b": 2}).json()["result"] == {"result": 3}


def test_a_huge_result_is_truncated_and_says_so(stack):
    response = call(stack, "local__big", {"n": 50_000})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["truncated"] is True and len(body["result"]) == MAX_RESULT_CHARS
    small = call(stack, "local__big", {"n": 10}).json()
    assert small["truncated"] is False and small["result"] == {"result": "x" * 10}


def test_a_mounted_tool_that_fails_is_502_with_its_message(stack):
    body = error(call(stack, "local__fail"), 502)
    assert body["code"] == "tool_failed" and "this tool always fails" in body["message"]


def test_the_knowledge_base_down_is_503_not_500(stack):
    body = error(call(stack, "knowledge_search", {"query": "generators"}), 503)
    assert body["code"] == "tool_unavailable" and "knowledge base" in body["message"]


# ---- built-in tools -------------------------------------------------------------------------------------


def test_the_calculator_computes_and_reports_the_cost(stack):
    body = call(stack, "calculator", {"expression": "(17 * 23) + 2 ** 10 - sqrt(16)"}).json()
    assert body["result"] == {"value": 17 * 23 + 2**10 - 4.0} and body["cost"] == 0.002 and body["latency_ms"] >= 0


@pytest.mark.parametrize(
    "expression,fragment",
    [
        ("__import__('os').system('true')", "not allowed"),
        ("(1).__class__", "not allowed"),
        ("9 ** 9 ** 9", "exceeds"),
        ("1 / 0", "division by zero"),
        ("2 +", "not an arithmetic expression"),
    ],
)
def test_the_calculator_refuses_what_is_not_bounded_arithmetic(stack, expression, fragment):
    body = error(call(stack, "calculator", {"expression": expression}), 400)
    assert body["param"] == "arguments.expression" and fragment in body["message"]


def test_sql_reads_with_a_row_limit(stack):
    body = call(stack, "sql_query", {"query": "SELECT name, price FROM products ORDER BY id"}).json()["result"]
    assert body["columns"] == ["name", "price"] and len(body["rows"]) == SQL_MAX_ROWS and body["more_rows"] is True
    assert body["rows"][0] == ["product 1", 1.5]
    count = call(stack, "sql_query", {"query": "WITH c AS (SELECT count(*) AS n FROM products) SELECT n FROM c"})
    assert count.json()["result"]["rows"] == [[20]] and count.json()["result"]["more_rows"] is False


@pytest.mark.parametrize(
    "query",
    [
        "INSERT INTO products (name, price) VALUES ('free', 0)",
        "UPDATE products SET price = 0",
        "DELETE FROM products",
        "DROP TABLE products",
        "SELECT 1; DELETE FROM products",
        "WITH gone AS (DELETE FROM products RETURNING *) SELECT * FROM gone",
        "SELECT * INTO stolen FROM products",
        "ATTACH DATABASE '/tmp/other.db' AS other",
        "PRAGMA query_only = OFF",
    ],
)
def test_sql_write_attempts_are_refused_and_nothing_changes(stack, query):
    body = error(call(stack, "sql_query", {"query": query}), 400)
    assert body["code"] == "tool_refused" and body["param"] == "arguments.query"
    rows = call(stack, "sql_query", {"query": "SELECT count(*), sum(price) FROM products"}).json()["result"]["rows"]
    assert rows == [[20, 315.0]]


def test_sql_errors_and_slow_queries_are_clear(stack):
    assert "no such table" in error(call(stack, "sql_query", {"query": "SELECT * FROM nope"}), 400)["message"]
    endless = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"
    assert error(call(stack, "sql_query", {"query": endless}), 504)["code"] == "tool_timeout"
    assert call(stack, "sql_query", {"query": "SELECT 1"}).status_code == 200


@pytest.mark.parametrize(
    "url,fragment",
    [
        ("http://localhost:{secret}/", "resolves to 127.0.0.1"),  # the real resolver (/etc/hosts)
        ("http://loopback.test:{secret}/", "resolves to 127.0.0.1"),
        ("http://metadata.test/latest/meta-data/", "resolves to 169.254.169.254"),
        ("http://127.0.0.1:{secret}/", "not among the allowed hosts"),
        ("http://example.org/", "not among the allowed hosts"),
        ("file:///etc/passwd", "scheme 'file' is not allowed"),
    ],
)
def test_http_fetch_keeps_ssrf_closed(stack, url, fragment):
    body = error(call(stack, "http_fetch", {"url": url.format(secret=stack.secret_port)}), 400)
    assert body["code"] == "tool_refused" and fragment in body["message"] and "secret" not in json.dumps(body)


# ---- MCP, both ways ---------------------------------------------------------------------------------


@asynccontextmanager
async def mcp_client(stack: ToolsBento, key: str | None, mode: str = "auto"):
    headers = {"Authorization": f"Bearer {key}"} if key else None
    async with (
        create_mcp_http_client(headers=headers) as http,
        Client(streamable_http_client(f"{stack.url}/mcp", http_client=http), mode=mode) as client,
    ):
        yield client


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_an_mcp_client_with_a_key_lists_and_calls_its_tools(stack, mode):
    async def session():
        async with mcp_client(stack, stack.keys.narrow, mode) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            added = await client.call_tool("calculator", {"expression": "6 * 7"})
            forbidden = await client.call_tool("sql_query", {"query": "SELECT 1"})
            invalid = await client.call_tool("calculator", {"expression": 6})
            return client.protocol_version, names, added, forbidden, invalid

    version, names, added, forbidden, invalid = asyncio.run(session())
    assert version == ("2026-07-28" if mode == "auto" else "2025-11-25")
    assert {"calculator", "knowledge_search", "local__add"} <= names and "sql_query" not in names
    assert not added.is_error and added.structured_content == {"value": 42} and added.meta["ragyard/cost"] == 0.002
    assert forbidden.is_error and "may not use" in forbidden.content[0].text
    assert invalid.is_error and "arguments.expression" in invalid.content[0].text


@pytest.mark.parametrize("key", [None, "rg-wrong-key"])
def test_an_mcp_client_without_a_valid_key_is_refused(stack, key):
    async def session():
        async with mcp_client(stack, key) as client:
            await client.list_tools()

    with pytest.raises(BaseException) as raised:
        asyncio.run(session())
    refusal = raised.value
    while isinstance(refusal, BaseExceptionGroup):
        refusal = refusal.exceptions[0]
    assert isinstance(refusal, MCPError) and "error response" in refusal.message
    raw = httpx.post(f"{stack.url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, timeout=30)
    assert raw.status_code == 401 and raw.headers["www-authenticate"].startswith("Bearer")


def test_the_mcp_endpoint_refuses_hosts_not_allowed(stack):
    response = httpx.post(
        f"{stack.url}/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={
            "Authorization": f"Bearer {stack.keys.full}",
            "Host": "evil.example:80",
            "Accept": "application/json, text/event-stream",
        },
        timeout=30,
    )
    assert response.status_code == 421


def test_the_python_client_lists_calls_and_raises_the_errors(stack):
    async def use():
        async with httpx.AsyncClient() as http:
            client = ToolsClient(stack.url, http, key_id=stack.keys.narrow_id)
            tools = await client.list()
            result = await client.call("calculator", {"expression": "2 ** 8"})
            with pytest.raises(Rejected) as forbidden:
                await client.call("sql_query", {"query": "SELECT 1"})
            return tools, result, forbidden.value

    tools, result, forbidden = asyncio.run(use())
    assert "calculator" in [t.function.name for t in tools.tools] and len(tools.details) == len(tools.tools)
    assert result.result == {"value": 256} and result.cost == 0.002
    assert forbidden.error.status == 403 and forbidden.error.code == "tool_not_allowed"


# ---- mounted servers that die and come back ------------------------------------------------------------


def test_a_server_that_is_never_up_answers_503_for_its_names(stack):
    body = error(call(stack, "ghost__anything"), 503)
    assert body["code"] == "tool_unavailable" and "'ghost' is down" in body["message"]


def test_an_http_server_that_dies_leaves_the_registry_answers_503_and_comes_back(stack):
    assert call(stack, "web__add", {"a": 2, "b": 40}).json()["result"] == {"result": 42}
    stack.kill_demo()
    # Right away, and once it has left the listing: a 503 (a tombstone), never "unknown tool" or a hang.
    assert error(call(stack, "web__add", {"a": 2, "b": 40}), 503)["code"] == "tool_unavailable"
    wait_for(lambda: "web__add" not in listed(stack), "web__add left the listing")
    body = error(call(stack, "web__add", {"a": 2, "b": 40}), 503)
    assert "'web' is down" in body["message"]
    assert error(call(stack, "web__add", {"a": 2, "b": 40}, key=stack.keys.narrow), 403)  # still its policy
    stack.start_demo()
    wait_for(lambda: "web__add" in listed(stack), "web__add came back")
    assert call(stack, "web__add", {"a": 2, "b": 40}).json()["result"] == {"result": 42}


def test_a_stdio_server_that_is_killed_is_respawned_and_its_tools_come_back(stack):
    def stdio_children() -> list[psutil.Process]:
        return [
            p
            for p in psutil.Process(stack.services.pid("tools")).children(recursive=True)
            if "tests.support.mcp_demo_server" in " ".join(p.cmdline()) and "stdio" in p.cmdline()
        ]

    (child,) = stdio_children()
    child.kill()
    child.wait(timeout=10)
    first = call(stack, "local__add", {"a": 1, "b": 1})
    assert first.status_code in (200, 503), first.text  # a respawn may already have answered
    if first.status_code == 503:
        assert first.json()["error"]["code"] == "tool_unavailable"
    wait_for(lambda: call(stack, "local__add", {"a": 1, "b": 1}).status_code == 200, "local__add answers again")
    (respawned,) = stdio_children()
    assert respawned.pid != child.pid
