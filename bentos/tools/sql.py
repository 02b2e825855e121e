"""Read-only SQL over one configured database (SQLite or PostgreSQL), three guards deep:

1. the statement allow-list: exactly one statement, starting with SELECT or WITH, with no data
   changing or definition keyword anywhere (sqlparse's tokens, so strings and comments do not count);
2. a read-only connection: SQLite opened `mode=ro` with `query_only`; PostgreSQL in a READ ONLY
   transaction that is always rolled back (configure a read-only role as well);
3. limits: at most `max_rows` rows (the answer says when there were more) and a time limit the
   database enforces (PostgreSQL's statement_timeout, SQLite's progress handler), so a slow query
   stops in the database, not only in the caller.
"""

from __future__ import annotations

import datetime
import decimal
import logging
import time
from typing import Any

import anyio
import sqlparse
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlparse import tokens

from bentos.tools.errors import (
    InvalidArguments,
    ToolFailed,
    ToolRefused,
    ToolTimeout,
    ToolUnavailable,
)

logger = logging.getLogger("ragyard.tools.sql")

PARAM = "arguments.query"
MAX_QUERY_CHARS = 10_000
# Keywords that make a statement more than a read, wherever they stand (SELECT ... INTO creates a table).
WRITE_KEYWORDS = {"INTO"}
# SQLite calls the progress handler every this many virtual-machine instructions.
SQLITE_PROGRESS_STEPS = 10_000
MAX_DESCRIBED_CHARS = 1500

PARAMETERS = {
    "type": "object",
    "properties": {
        "query": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_QUERY_CHARS,
            "description": "One read-only SQL statement: SELECT ... or WITH ... SELECT ...",
        }
    },
    "required": ["query"],
    "additionalProperties": False,
}


def check_statement(query: str) -> str:
    """The one read-only statement in `query`; ToolRefused for anything else."""
    statements = [
        s
        for s in sqlparse.parse(query)
        if any(
            not t.is_whitespace and t.ttype not in tokens.Comment and t.ttype is not tokens.Punctuation
            for t in s.flatten()
        )
    ]
    if len(statements) != 1:
        raise ToolRefused(f"{PARAM}: exactly one statement is allowed, found {len(statements)}", param=PARAM)
    statement = statements[0]
    first = statement.token_first(skip_cm=True, skip_ws=True).normalized.upper()
    if first not in ("SELECT", "WITH"):
        raise ToolRefused(f"{PARAM}: only SELECT or WITH ... SELECT is allowed, not {first}", param=PARAM)
    for token in statement.flatten():
        word = token.normalized.upper()
        if (token.ttype in (tokens.Keyword.DML, tokens.Keyword.DDL) and word != "SELECT") or (
            token.is_keyword and word in WRITE_KEYWORDS
        ):
            raise ToolRefused(f"{PARAM}: {word} is not allowed in a read-only query", param=PARAM)
    return str(statement).strip().rstrip(";")


def cell(value: Any) -> Any:
    """A value as JSON can carry it."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    return str(value)


def read_only_engine(url: str) -> Engine:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise ValueError("tools.sql_url: a SQLite database file is needed")
        engine = create_engine(
            f"sqlite:///file:{parsed.database}?mode=ro&uri=true", connect_args={"check_same_thread": False}
        )

        @event.listens_for(engine, "connect")
        def _query_only(dbapi_connection, _record) -> None:
            dbapi_connection.execute("PRAGMA query_only = ON")

        return engine
    if backend == "postgresql":
        return create_engine(
            parsed.set(drivername="postgresql+psycopg"),
            pool_pre_ping=True,
            pool_size=2,
            max_overflow=2,
            pool_timeout=5,
            connect_args={"options": "-c default_transaction_read_only=on"},
        )
    raise ValueError(f"tools.sql_url: {backend} is not supported (sqlite or postgresql)")


def failure(exc: BaseException) -> Exception:
    """The tool error for a driver's error, by its SQLSTATE (psycopg) or SQLite error name."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    code = getattr(exc, "sqlstate", None) or getattr(exc, "sqlite_errorname", None) or ""
    if code in ("57014", "SQLITE_INTERRUPT"):
        return ToolTimeout("the query ran past its time limit and was stopped by the database")
    if code in ("25006", "SQLITE_READONLY"):
        return ToolRefused(f"{PARAM}: the database refused a write ({message})", param=PARAM)
    if code[:2] in ("42", "22") or code == "SQLITE_ERROR":  # syntax, unknown names, bad values
        return InvalidArguments(f"{PARAM}: {message}", param=PARAM)
    if code[:2] == "08" or code in ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_CANTOPEN", "SQLITE_IOERR"):
        return ToolUnavailable(f"the database is unavailable: {message}")
    return ToolFailed(f"the query failed: {message}")


class ReadOnlyDatabase:
    def __init__(self, url: str, max_rows: int, timeout_s: float):
        self.engine = read_only_engine(url)
        self.max_rows = max_rows
        self.timeout_s = timeout_s

    def describe(self) -> str:
        """Its tables and columns, for the tool's description (bounded); empty when it cannot be read."""
        try:
            inspector = inspect(self.engine)
            tables = [
                f"{name}({', '.join(c['name'] for c in inspector.get_columns(name))})"
                for name in inspector.get_table_names()
            ]
        except SQLAlchemyError as exc:
            logger.warning("the SQL tool's database cannot be described: %s", exc)
            return ""
        text = "; ".join(tables)
        return text if len(text) <= MAX_DESCRIBED_CHARS else text[:MAX_DESCRIBED_CHARS] + "..."

    def query(self, statement: str) -> dict[str, Any]:
        """Run one statement read-only (no statement check here: `check_statement` first)."""
        deadline = time.monotonic() + self.timeout_s
        try:
            with self.engine.connect() as conn:
                dbapi = conn.connection.dbapi_connection
                assert dbapi is not None, "a connection in use has its DBAPI connection"
                if conn.dialect.name == "sqlite":
                    dbapi.set_progress_handler(lambda: int(time.monotonic() > deadline), SQLITE_PROGRESS_STEPS)
                try:
                    cursor = dbapi.cursor()
                    if conn.dialect.name == "postgresql":
                        cursor.execute("SET TRANSACTION READ ONLY")
                        cursor.execute(f"SET LOCAL statement_timeout = {int(self.timeout_s * 1000)}")
                    cursor.execute(statement)
                    columns = [d[0] for d in cursor.description or []]
                    rows = cursor.fetchmany(self.max_rows + 1) if columns else []
                    cursor.close()
                finally:
                    dbapi.rollback()
                    if conn.dialect.name == "sqlite":
                        dbapi.set_progress_handler(None, 0)
        except DBAPIError as exc:  # connecting, through SQLAlchemy
            raise failure(exc.orig or exc) from None
        except self.engine.dialect.loaded_dbapi.Error as exc:  # the statement, through the driver's cursor
            raise failure(exc) from None
        return {
            "columns": columns,
            "rows": [[cell(v) for v in row] for row in rows[: self.max_rows]],
            "row_count": min(len(rows), self.max_rows),
            "more_rows": len(rows) > self.max_rows,
        }

    async def run(self, arguments: dict[str, Any]) -> dict[str, Any]:
        statement = check_statement(arguments["query"])
        # In a thread; the database's own time limit ends it, the registry's timeout answers first.
        return await anyio.to_thread.run_sync(self.query, statement, abandon_on_cancel=True)

    async def aclose(self) -> None:
        self.engine.dispose()
