"""The tools bento's parts in-process, against real servers where they call one: the calculator's
bounds, the SQL guards one by one (SQLite; a real PostgreSQL in tests/integration/bentos/test_tools_sql.py),
HTTP fetch's redirect re-checks against a local server in a thread, argument errors, and mounted tool names."""

from __future__ import annotations

import asyncio
import http.server
import ipaddress
import re
import sqlite3
import threading
from collections.abc import Iterator
from urllib.parse import parse_qs, urlparse

import jsonschema
import pytest

from bentos.tools import calculator, sql
from bentos.tools.errors import InvalidArguments, ToolRefused, ToolTimeout
from bentos.tools.fetch import Fetcher, is_public
from bentos.tools.mounts import tool_name
from bentos.tools.registry import argument_error
from ragyard.settings import ToolsSettings

# ---- calculator ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expression,value",
    [
        ("17 * 23", 391),
        ("2 ** 100", 2**100),
        ("7 // 2 + 7 % 2", 4),
        ("-(3 - 5) * +2", 4),
        ("sqrt(2) ** 2", 2.0000000000000004),
        ("max(1, 5, 3) + min(4, 2)", 7),
        ("round(pi, 3)", 3.142),
        ("floor(-2.5) + ceil(2.1)", 0),
        ("log(e)", 1.0),
        ("2 ** -2", 0.25),
        ("1e3 / 8", 125.0),
    ],
)
def test_the_calculator_evaluates_arithmetic(expression, value):
    assert calculator.evaluate(expression) == value


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os')",
        "open('/etc/passwd')",
        "x",
        "(1).real",
        "[1, 2]",
        "'a' * 3",
        "1 if 1 else 2",
        "1 < 2",
        "lambda: 1",
        "round(12345, -10 ** 300)",
        "10 ** 10 ** 10",
        "(2 ** 4000) * (2 ** 4000)",
        "2.0 ** 5000",
        "1 / 0",
        "sqrt(-1)",
        "max()",
        "abs(x=1)",
        "True + 1",
        "1j",
        "(" * 300 + "1" + ")" * 300,
        "1 + " * 150 + "1",
    ],
)
def test_the_calculator_refuses_anything_else_without_computing_it(expression):
    # Unbounded, 10 ** 10 ** 10 or round(12345, -10 ** 300) would not finish: this test would hang.
    with pytest.raises(InvalidArguments) as refused:
        calculator.evaluate(expression)
    assert refused.value.param == "arguments.expression"


# ---- SQL ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "SELECT 1",
        "select a from t where b = 'DELETE'",
        "/* c */ WITH x AS (SELECT 1) SELECT * FROM x",
        "SELECT 1;",
        'SELECT "update" FROM t',
        "SELECT ':name' AS colon",
    ],
)
def test_the_statement_check_lets_one_read_through(query):
    assert sql.check_statement(query) == query.strip().rstrip(";")


@pytest.mark.parametrize(
    "query,fragment",
    [
        ("SELECT 1; SELECT 2", "exactly one statement"),
        ("   ;  ", "exactly one statement"),
        ("INSERT INTO t VALUES (1)", "not INSERT"),
        ("VACUUM", "not VACUUM"),
        ("PRAGMA query_only = OFF", "not PRAGMA"),
        ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "DELETE is not allowed"),
        ("SELECT * INTO copy FROM t", "INTO is not allowed"),
        ("SELECT * FROM t FOR UPDATE", "UPDATE is not allowed"),
    ],
)
def test_the_statement_check_refuses_everything_else(query, fragment):
    with pytest.raises(ToolRefused, match=re.escape(fragment)):
        sql.check_statement(query)


@pytest.fixture
def sqlite_file(tmp_path):
    path = tmp_path / "data.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (a INTEGER, b BLOB)")
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, b"\x00\xff") for i in range(10)])
    return path


def test_sqlite_is_opened_read_only_even_past_the_statement_check(sqlite_file):
    database = sql.ReadOnlyDatabase(f"sqlite:///{sqlite_file}", max_rows=3, timeout_s=2)
    with pytest.raises(ToolRefused, match="refused a write"):
        database.query("INSERT INTO t VALUES (99, NULL)")
    with pytest.raises(ToolRefused, match="refused a write"):
        database.query("CREATE TABLE u (x)")
    result = database.query("SELECT a, b FROM t ORDER BY a")
    assert result == {
        "columns": ["a", "b"],
        "rows": [[0, "00ff"], [1, "00ff"], [2, "00ff"]],
        "row_count": 3,
        "more_rows": True,
    }
    assert database.describe() == "t(a, b)"


def test_sqlite_stops_a_long_query_itself(sqlite_file):
    database = sql.ReadOnlyDatabase(f"sqlite:///{sqlite_file}", max_rows=3, timeout_s=0.5)
    with pytest.raises(ToolTimeout):  # an endless query: without the progress handler this would hang
        database.query("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n")


# ---- HTTP fetch -----------------------------------------------------------------------------------------


class Pages(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", parse_qs(url.query)["to"][0])
            self.end_headers()
            return
        kinds = {
            "/page": ("text/html; charset=utf-8", b"<p>hello, tools</p>"),
            "/image": ("image/png", b"\x89PNG\r\n\x1a\n"),
            "/big": ("text/plain", b"y" * 5000),
        }
        kind, body = kinds[url.path]
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def pages() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Pages)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def fetch(url: str, **settings) -> dict:
    """One fetch: `allowed.test` is this machine, allow-listed; `metadata.test` is the cloud metadata address."""
    config = ToolsSettings(
        fetch_hosts=["allowed.test", "metadata.test"],
        fetch_allow_networks=["127.0.0.1/32"],
        fetch_resolve={"allowed.test": ["127.0.0.1"], "metadata.test": ["169.254.169.254"]},
        **settings,
    )

    async def run():
        fetcher = Fetcher(config, timeout_s=5)
        try:
            return await fetcher.run({"url": url})
        finally:
            await fetcher.aclose()

    return asyncio.run(run())


def test_fetch_returns_text_from_an_allowed_host(pages):
    body = fetch(f"http://allowed.test:{pages}/page")
    assert body == {
        "url": f"http://allowed.test:{pages}/page",
        "status": 200,
        "content_type": "text/html; charset=utf-8",
        "text": "<p>hello, tools</p>",
        "truncated": False,
    }


def test_fetch_follows_a_redirect_to_an_allowed_host(pages):
    body = fetch(f"http://allowed.test:{pages}/redirect?to=/page")
    assert body["url"] == f"http://allowed.test:{pages}/page" and body["text"] == "<p>hello, tools</p>"


@pytest.mark.parametrize(
    "target,fragment",
    [
        ("http://metadata.test/latest/meta-data/", "resolves to 169.254.169.254"),
        ("http://127.0.0.1:{port}/page", "not among the allowed hosts"),
        ("http://other.test/", "not among the allowed hosts"),
        ("file:///etc/passwd", "scheme 'file'"),
    ],
)
def test_every_redirect_is_checked_again(pages, target, fragment):
    with pytest.raises(ToolRefused, match=re.escape(fragment)):
        fetch(f"http://allowed.test:{pages}/redirect?to={target.format(port=pages)}")


def test_fetch_refuses_endless_redirects_binary_bodies_and_cuts_big_ones(pages):
    loop = f"http://allowed.test:{pages}/redirect?to=/redirect%3Fto%3D/page"
    with pytest.raises(ToolRefused, match="more than 1 redirects"):
        fetch(loop, fetch_max_redirects=1)
    with pytest.raises(ToolRefused, match="image/png"):
        fetch(f"http://allowed.test:{pages}/image")
    big = fetch(f"http://allowed.test:{pages}/big", fetch_max_bytes=1000)
    assert big["truncated"] is True and big["text"] == "y" * 1000


@pytest.mark.parametrize(
    "address,public",
    [
        ("93.184.216.34", True),
        ("2606:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("224.0.0.1", False),
        ("0.0.0.0", False),
        ("::1", False),
        ("fe80::1", False),
        ("::ffff:127.0.0.1", False),
        ("64:ff9b::7f00:1", False),
        ("2002:7f00:1::1", False),
        ("::ffff:93.184.216.34", True),
    ],
)
def test_public_addresses(address, public):
    assert is_public(ipaddress.ip_address(address)) is public


# ---- arguments and names ---------------------------------------------------------------------------------


SCHEMA = {
    "type": "object",
    "properties": {
        "query": {"type": "string"},
        "filter": {"type": "object", "properties": {"source": {"type": "string"}}, "additionalProperties": False},
    },
    "required": ["query"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    "arguments,param",
    [
        ({}, "arguments.query"),
        ({"query": 1}, "arguments.query"),
        ({"query": "x", "top": 1}, "arguments.top"),
        ({"query": "x", "filter": {"colour": "red"}}, "arguments.filter.colour"),
        ({"query": "x", "filter": {"source": 3}}, "arguments.filter.source"),
    ],
)
def test_argument_errors_name_the_field(arguments, param):
    error = argument_error(arguments, jsonschema.Draft202012Validator(SCHEMA))
    assert error.param == param and error.message.startswith(f"{param}: ")


def test_mounted_tool_names_fit_openai_and_never_collide():
    pattern = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
    assert tool_name("docs", "search") == "docs__search"
    names = [tool_name("docs", remote) for remote in ("a.b", "a/b", "a_b", "x" * 80, "x" * 81)]
    assert all(pattern.match(name) for name in names) and len(set(names)) == len(names)
