"""The built-in tools, made from the settings: knowledge-base search and the calculator always; SQL when
a database is configured, HTTP fetch when hosts are. Each gets its default policy unless
`tools.policies` names it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bentos.tools import calculator, fetch, knowledge, sql
from bentos.tools.registry import Tool
from ragyard.settings import ToolPolicy, ToolsBentoSettings

DEFAULT_POLICIES = {
    "knowledge_search": ToolPolicy(timeout_s=15.0),
    "calculator": ToolPolicy(timeout_s=2.0),
    "sql_query": ToolPolicy(timeout_s=10.0),
    "http_fetch": ToolPolicy(timeout_s=15.0),
}


class BuiltinTools:
    """The built-in tools and what they hold open (HTTP pools, a database engine)."""

    def __init__(self, settings: ToolsBentoSettings):
        config = settings.tools
        self.tools: list[Tool] = []
        self._closers: list[Callable[[], Awaitable[None]]] = []

        def policy(name: str) -> ToolPolicy:
            return config.policies.get(name, DEFAULT_POLICIES[name])

        search = knowledge.KnowledgeSearch(settings.retriever.url, config, policy("knowledge_search").timeout_s)
        self._closers.append(search.aclose)
        self.tools.append(
            Tool(
                "knowledge_search",
                knowledge.DESCRIPTION,
                knowledge.parameters(config.kb_max_top_k),
                search.run,
                policy("knowledge_search"),
            )
        )
        self.tools.append(
            Tool(
                "calculator", calculator.DESCRIPTION, calculator.PARAMETERS, calculator.calculate, policy("calculator")
            )
        )
        if config.sql_url:
            database = sql.ReadOnlyDatabase(config.sql_url, config.sql_max_rows, policy("sql_query").timeout_s)
            self._closers.append(database.aclose)
            tables = database.describe()
            description = (
                f"Run one read-only SQL query (SELECT) on the {database.engine.dialect.name} database; "
                f"at most {config.sql_max_rows} rows are returned." + (f" Tables: {tables}" if tables else "")
            )
            self.tools.append(Tool("sql_query", description, sql.PARAMETERS, database.run, policy("sql_query")))
        if config.fetch_hosts:
            fetcher = fetch.Fetcher(config, policy("http_fetch").timeout_s)
            self._closers.append(fetcher.aclose)
            self.tools.append(
                Tool(
                    "http_fetch",
                    f"Fetch a web page or text file (as text) from one of these hosts: "
                    f"{', '.join(config.fetch_hosts)}.",
                    fetch.PARAMETERS,
                    fetcher.run,
                    policy("http_fetch"),
                )
            )

    async def aclose(self) -> None:
        for close in self._closers:
            await close()
