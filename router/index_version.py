"""The index version that semantic cache hits must share: Milvus row count + the latest ingest.

`<collection>:<rows>:<latest indexed_at in the ingest ledger>`: added or deleted chunks change the
row count, a re-indexed document changes the ledger's newest timestamp. Where the ledger file is not
on this machine (a scaled-out deployment) the version is the row count alone. Cached for
`index_version_ttl_s` so that a request costs no Milvus query.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time

import anyio

from bentos.retriever import collection as col
from ragyard.settings import Settings


def latest_ingest(ledger_path) -> str:
    if not ledger_path.exists():
        return "-"
    conn = sqlite3.connect(f"file:{ledger_path}?mode=ro", uri=True, timeout=5)
    try:
        row = conn.execute("SELECT MAX(indexed_at) FROM documents").fetchone()
    except sqlite3.Error:
        return "-"
    finally:
        conn.close()
    return f"{row[0]:.6f}" if row and row[0] is not None else "-"


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
            rows = col.row_count(self.client, milvus.collection)
        except Exception:
            self.client = None
            raise
        return f"{milvus.collection}:{rows}:{latest_ingest(self.settings.ledger_path)}"

    async def current(self) -> str:
        async with self.lock:
            if self.value is None or time.monotonic() - self.read_at > self.settings.router.index_version_ttl_s:
                self.value = await anyio.to_thread.run_sync(self._read)
                self.read_at = time.monotonic()
            return self.value
