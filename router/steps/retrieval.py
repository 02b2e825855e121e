"""Retrieval: the question's chunks from the retriever bento, under the retrieval timeout."""

from __future__ import annotations

from ragyard.clients.retriever import RetrieverClient
from ragyard.contracts.retriever import Hit, SearchRequest
from ragyard.kit.errors import Unavailable
from ragyard.settings import RouterSettings
from router.turn import Turn


class Retrieval:
    def __init__(self, retriever: RetrieverClient, config: RouterSettings):
        self.retriever = retriever
        self.config = config

    async def search(self, turn: Turn) -> list[Hit]:
        request = turn.request
        search = SearchRequest(
            query=request.question or request.messages[-1].content,
            top_k=self.config.top_k,
            mode=self.config.retrieval_mode,
        )
        timeout_s = self.config.retrieve_timeout_s
        with turn.step("retrieve", top_k=search.top_k, mode=search.mode) as span:
            try:
                response = await turn.guard(self.retriever.search(search, timeout_s), timeout_s)
            except TimeoutError as exc:  # e.g. a restarting bento: its port accepts, nothing answers yet
                raise Unavailable(
                    f"retriever at {self.retriever.url} did not answer within {timeout_s:g} s", retryable=False
                ) from exc
            span.attributes["chunk_ids"] = [h.chunk_id for h in response.hits]
        return response.hits
