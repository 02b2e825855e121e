"""Dagster resources of the ingestion, each with its typed config: the Milvus collection, the ledger,
the embedder and the corpus. `ingest_resources` builds them from the settings the code location
parsed (RAGYARD_* variables); the Dagster UI shows their config, and a secret only by its name."""

import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
from pymilvus import MilvusClient

from pipelines.ledger import Ledger
from ragyard import collection as col
from ragyard.clients.embedder import EmbedderClient
from ragyard.embedding import EmbeddingModel, vector_space
from ragyard.settings import ChunkerSettings, IngestionSettings, SourceSettings


class MilvusResource(dg.ConfigurableResource):
    """The collection of chunks (RAGYARD_MILVUS__*), and how many rows go in one upsert."""

    uri: str
    token: str
    collection: str
    timeout_s: float
    dense_index: str  # used when the collection is created
    dense_index_params: dict[str, Any]
    write_batch_rows: int

    def client(self) -> MilvusClient:
        return col.connect(self.uri, self.token, self.timeout_s)

    def ensure_collection(self, client: MilvusClient, dim: int) -> bool:
        """The collection, created with the configured dense index if missing; True if created."""
        return col.ensure_collection(
            client, self.collection, dim, col.dense_index(self.dense_index, self.dense_index_params)
        )


class LedgerResource(dg.ConfigurableResource):
    """The ledger (under RAGYARD_HOME): per document, what the collection holds."""

    path: str

    @property
    def ledger_path(self) -> Path:
        return Path(self.path)

    def ledger(self) -> Ledger:
        return Ledger(self.ledger_path)

    @property
    def lock_path(self) -> Path:
        return self.ledger_path.with_suffix(".lock")


@lru_cache(maxsize=2)
def _loaded_model(
    name: str, device: str, batch_size: int, backend: str, models_dir: str, threads: int
) -> EmbeddingModel:
    # Loaded once per process: in-process executors and tests materialize many times.
    return EmbeddingModel(
        name, device=device, batch_size=batch_size, backend=backend, models_dir=Path(models_dir), threads=threads
    )


class EmbedderResource(dg.ConfigurableResource):
    """Embeds chunk texts (RAGYARD_EMBEDDER__*): with the embedder's model code in this process (the
    default), or through the embedder bento at `url` when `use_bento` (RAGYARD_INGEST__USE_EMBEDDER_BENTO)."""

    model: str
    dim: int
    device: str
    batch_size: int
    backend: str  # torch, onnx, onnx-int8, openvino: in this process and in the embedder bento alike
    models_dir: str  # where the backend's export is built (under RAGYARD_HOME)
    threads: int
    use_bento: bool
    url: str
    max_texts_per_request: int
    concurrency: int  # requests in flight to the bento

    def checkpoint_batch(self) -> int:
        """Texts encoded between two checkpoints: enough to keep the model (or every request the
        embedder bento may have in flight) busy, few enough that a kill loses little."""
        return self.max_texts_per_request * self.concurrency if self.use_bento else self.batch_size * 4

    def encode(self, texts: list[str]) -> np.ndarray:
        if self.use_bento:
            vectors = self._encode_with_bento(texts)
            dim = vectors.shape[1] if len(vectors) else self.dim
        else:
            model = self.loaded_model()
            vectors, dim = model.encode(texts), model.dim
        if dim != self.dim:
            raise ValueError(f"model {self.model!r} makes {dim}-dim vectors but RAGYARD_EMBEDDER__DIM is {self.dim}")
        return vectors

    def loaded_model(self) -> EmbeddingModel:
        return _loaded_model(self.model, self.device, self.batch_size, self.backend, self.models_dir, self.threads)

    @property
    def vector_space(self) -> str:
        """What the vectors depend on besides the texts (model, and a quantized backend): the ledger's
        fingerprint and the checkpoint's keys."""
        return vector_space(self.model, self.backend)

    def _encode_with_bento(self, texts: list[str]) -> np.ndarray:
        client = EmbedderClient(self.url, timeout_s=300)
        step = self.max_texts_per_request
        batches = [texts[i : i + step] for i in range(0, len(texts), step)]
        try:
            # httpx.Client is thread-safe; map keeps the batches in order.
            with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="embed") as pool:
                parts = list(pool.map(lambda batch: client.embed(batch).embeddings, batches))
        finally:
            client.close()
        rows = [row for part in parts for row in part]
        return np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)


class CorpusResource(dg.ConfigurableResource):
    """What the ingestion indexes and how it cuts it: the source folders and the file bound
    (RAGYARD_INGEST__*), the chunker (RAGYARD_CHUNKER__*)."""

    sources: list[dict[str, Any]]  # each a SourceSettings: name, path, include
    max_file_bytes: int
    chunk_max_chars: int
    chunk_overlap_chars: int
    chunk_min_chars: int

    def source_settings(self) -> list[SourceSettings]:
        return [SourceSettings.model_validate(source) for source in self.sources]

    def chunker(self) -> ChunkerSettings:
        return ChunkerSettings(
            max_chars=self.chunk_max_chars, overlap_chars=self.chunk_overlap_chars, min_chars=self.chunk_min_chars
        )


def _secret(variable: str, value: str) -> str | dg.EnvVar:
    """A value that came from `variable` as Dagster's EnvVar, read at run time and never shown."""
    return dg.EnvVar(variable) if value and os.environ.get(variable) == value else value


def ingest_resources(settings: IngestionSettings) -> dict[str, dg.ConfigurableResource]:
    """The resources the ingestion's assets, checks and job use, from the settings parsed once."""
    milvus, embedder, ingest, chunker = settings.milvus, settings.embedder, settings.ingest, settings.chunker
    return {
        "milvus": MilvusResource(
            uri=milvus.uri,
            token=_secret("RAGYARD_MILVUS__TOKEN", milvus.token),
            collection=milvus.collection,
            timeout_s=milvus.timeout_s,
            dense_index=milvus.dense_index,
            dense_index_params=milvus.dense_index_params,
            write_batch_rows=ingest.write_batch_rows,
        ),
        "ledger": LedgerResource(path=str(settings.ledger_path)),
        "embedder": EmbedderResource(
            model=embedder.model,
            dim=embedder.dim,
            device=embedder.device,
            batch_size=embedder.batch_size,
            backend=embedder.backend,
            models_dir=str(embedder.models_folder(settings.home)),
            threads=embedder.threads,
            use_bento=ingest.use_embedder_bento,
            url=embedder.url,
            max_texts_per_request=embedder.max_texts_per_request,
            concurrency=ingest.embed_concurrency,
        ),
        "corpus": CorpusResource(
            sources=[source.model_dump(mode="json") for source in ingest.sources],
            max_file_bytes=ingest.max_file_bytes,
            chunk_max_chars=chunker.max_chars,
            chunk_overlap_chars=chunker.overlap_chars,
            chunk_min_chars=chunker.min_chars,
        ),
    }
