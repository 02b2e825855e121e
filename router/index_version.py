"""The index version that semantic cache hits must share.

`<collection>:<content version>`: the ingestion writes its ledger's content version (a digest of
every document's content hash and settings) into a collection property after each run
(`ragyard.collection.content_version`), so a re-indexed document changes it even when the
chunk count stays, on one machine or in a cluster. A collection the ingestion never versioned
(built by another tool) falls back to its row count. Cached for `index_version_ttl_s` so that a
request costs no Milvus call.
"""

from __future__ import annotations

import asyncio
import time

import anyio

from ragyard import collection as col
from ragyard.settings import Settings


class IndexVersion:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.value: str | None = None
        self.read_at = 0.0
        self.client = None
        self.lock = asyncio.Lock()

    def _read(self) -> str:
        milvus = self.settings.milvus
        if self.client is None:
            self.client = col.connect(milvus.uri, milvus.token, timeout_s=5.0)
        try:
            version = col.content_version(self.client, milvus.collection) or \
                f"rows-{col.row_count(self.client, milvus.collection)}"
        except Exception:
            self.client = None
            raise
        return f"{milvus.collection}:{version}"

    async def current(self) -> str:
        async with self.lock:
            if self.value is None or time.monotonic() - self.read_at > self.settings.router.index_version_ttl_s:
                self.value = await anyio.to_thread.run_sync(self._read)
                self.read_at = time.monotonic()
            return self.value
