"""Where the router's state lives (API keys, budgets, cache, conversation memory): SQLite files
under RAGYARD_HOME on one machine, or one PostgreSQL database that every router replica shares
(`RAGYARD_ROUTER__STATE_URL`). The stores write the same SQL for both; what differs is here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import MetaData

# The engines and transactions are shared with the event outbox: they live in ragyard.database.
from ragyard.database import ROW_ID, connect, postgres_engine, query, transaction

if TYPE_CHECKING:
    from ragyard.settings import RouterBentoSettings

__all__ = ["ROW_ID", "Store", "connect", "database", "postgres_engine", "query", "transaction"]


def database(settings: RouterBentoSettings, name: str) -> Path | str:
    """The database of the state called `name`: the shared state URL when set, else its own SQLite file."""
    return settings.router.state_url or settings.home / "router" / f"{name}.sqlite3"


class Store:
    """A store's engine on its database, with its `tables` created (idempotently: replicas that
    start together take turns)."""

    tables: MetaData

    def __init__(self, database: Path | str):
        self.engine = connect(database)
        with transaction(self.engine, lock="ragyard-router-schema") as conn:
            self.tables.create_all(conn)

    def close(self) -> None:
        self.engine.dispose()
