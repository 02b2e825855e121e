"""Dagster resources: the platform settings (from RAGYARD_* environment variables) and the embedder."""

from functools import lru_cache

import dagster as dg
import numpy as np
from pymilvus import MilvusClient

from bentos.embedder.model import EmbeddingModel
from bentos.retriever import collection as col
from pipelines.ledger import Ledger
from ragyard.settings import Settings


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
    """Embeds chunk texts with the embedder's model code, in this process."""

    platform: dg.ResourceDependency[PlatformSettings]

    def encode(self, texts: list[str]) -> np.ndarray:
        embedder = self.platform.get().embedder
        model = _loaded_model(embedder.model, embedder.device, embedder.batch_size)
        if model.dim != embedder.dim:
            raise ValueError(
                f"model {embedder.model!r} makes {model.dim}-dim vectors but RAGYARD_EMBEDDER__DIM is {embedder.dim}"
            )
        return model.encode(texts)
