"""Dagster resources: the platform settings (from RAGYARD_* environment variables) and the embedder."""

from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import dagster as dg
import numpy as np
from pymilvus import MilvusClient

from bentos.embedder.client import EmbedderClient
from bentos.embedder.model import EmbeddingModel
from bentos.retriever import collection as col
from pipelines.ledger import Ledger
from ragyard.settings import EmbedderSettings, Settings


class PlatformSettings(dg.ConfigurableResource):
    """The RAGYARD_* settings. `settings_json` overrides the environment (tests use it)."""

    settings_json: str = ""

    def get(self) -> Settings:
        return Settings.model_validate_json(self.settings_json) if self.settings_json else Settings()

    def milvus(self) -> MilvusClient:
        milvus = self.get().milvus
        return col.connect(milvus.uri, milvus.token, milvus.timeout_s)

    def ledger(self) -> Ledger:
        return Ledger(self.get().ledger_path)


@lru_cache(maxsize=2)
def _loaded_model(name: str, device: str, batch_size: int) -> EmbeddingModel:
    # Loaded once per process: in-process executors and tests materialize many times.
    return EmbeddingModel(name, device=device, batch_size=batch_size)


class Embedder(dg.ConfigurableResource):
    """Embeds chunk texts: with the embedder's model code in this process (the default), or
    through the embedder bento when `ingest.use_embedder_bento` is set."""

    platform: dg.ResourceDependency[PlatformSettings]

    def encode(self, texts: list[str]) -> np.ndarray:
        settings = self.platform.get()
        embedder = settings.embedder
        if settings.ingest.use_embedder_bento:
            vectors = _encode_with_bento(embedder, texts, settings.ingest.embed_concurrency)
            dim = vectors.shape[1] if len(vectors) else embedder.dim
        else:
            model = _loaded_model(embedder.model, embedder.device, embedder.batch_size)
            vectors, dim = model.encode(texts), model.dim
        if dim != embedder.dim:
            raise ValueError(
                f"model {embedder.model!r} makes {dim}-dim vectors but RAGYARD_EMBEDDER__DIM is {embedder.dim}"
            )
        return vectors


    def checkpoint_batch(self) -> int:
        """Texts encoded between two checkpoints: enough to keep the model (or every request the
        embedder bento may have in flight) busy, few enough that a kill loses little."""
        settings = self.platform.get()
        if settings.ingest.use_embedder_bento:
            return settings.embedder.max_texts_per_request * settings.ingest.embed_concurrency
        return settings.embedder.batch_size * 4


def _encode_with_bento(embedder: EmbedderSettings, texts: list[str], concurrency: int) -> np.ndarray:
    client = EmbedderClient(embedder.url, timeout_s=300)
    step = embedder.max_texts_per_request
    batches = [texts[i : i + step] for i in range(0, len(texts), step)]
    try:
        # httpx.Client is thread-safe; map keeps the batches in order.
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="embed") as pool:
            parts = list(pool.map(lambda batch: client.embed(batch).embeddings, batches))
    finally:
        client.close()
    rows = [row for part in parts for row in part]
    return np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)
