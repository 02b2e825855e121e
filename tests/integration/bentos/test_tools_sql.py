"""The tools bento's SQL tool against a real PostgreSQL server (the session's): read-only past the
statement check, with a statement timeout (the SQLite side is in tests/unit/bentos/test_tools_parts.py)."""

import psycopg
import pytest

from bentos.tools import sql
from bentos.tools.errors import InvalidArguments, ToolRefused, ToolTimeout
from tests.support.databases import new_database


def test_postgres_runs_read_only_with_a_statement_timeout(postgres):
    url = new_database(postgres)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (a integer)")
        conn.execute("INSERT INTO t SELECT generate_series(1, 10)")
    database = sql.ReadOnlyDatabase(url, max_rows=4, timeout_s=0.5)
    try:
        assert database.query("SELECT a FROM t ORDER BY a")["rows"] == [[1], [2], [3], [4]]
        # Past the statement check (which refuses these), the read-only transaction refuses them too.
        with pytest.raises(ToolRefused, match="refused a write"):
            database.query("WITH gone AS (DELETE FROM t RETURNING *) SELECT count(*) FROM gone")
        with pytest.raises(ToolRefused, match="refused a write"):
            database.query("SELECT * INTO stolen FROM t")
        with pytest.raises(ToolTimeout):
            database.query("SELECT pg_sleep(5)")
        with pytest.raises(InvalidArguments, match="nope"):
            database.query("SELECT * FROM nope")
        assert database.query("SELECT count(*) FROM t")["rows"] == [[10]]
    finally:
        database.engine.dispose()
