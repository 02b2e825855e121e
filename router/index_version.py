"""The index version that semantic cache hits must share.

`<collection>:<content version>`: the ingestion writes its ledger's content version (a digest of
every document's content hash and settings) into a collection property after each run, so a
re-indexed document changes it even when the chunk count stays, on one machine or in a cluster.
The retriever bento reports it (`GET /index`); a collection the ingestion never versioned (built by
another tool) falls back to its row count. Cached for `index_version_ttl_s` so that a request costs
no call to the retriever.
"""

from __future__ import annotations

import asyncio
import time

from ragyard.clients.retriever import RetrieverClient
from ragyard.contracts.retriever import IndexInfo


def version_of(index: IndexInfo) -> str:
    return f"{index.collection}:{index.content_version or f'rows-{index.rows}'}"


class IndexVersion:
    def __init__(self, retriever: RetrieverClient, ttl_s: float, timeout_s: float = 5.0):
        self.retriever = retriever
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self.value: str | None = None
        self.read_at = 0.0
        self.lock = asyncio.Lock()

    async def current(self) -> str:
        async with self.lock:
            if self.value is None or time.monotonic() - self.read_at > self.ttl_s:
                self.value = version_of(await self.retriever.index(self.timeout_s))
                self.read_at = time.monotonic()
            return self.value
