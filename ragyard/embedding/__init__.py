"""The sentence embedding model: the embedder bento serves it, in-process ingestion and the evals load
it, the safety bento's ONNX export reads its packaged weights. `model.py` loads it on a backend,
`export.py` builds the ONNX and OpenVINO exports, `runtimes.py` runs them."""

from ragyard.embedding.model import (
    BACKENDS,
    PACKAGED_MODEL_NAME,
    QUANTIZED_BACKENDS,
    EmbeddingModel,
    resolve_model_path,
    vector_space,
)

__all__ = [
    "BACKENDS",
    "PACKAGED_MODEL_NAME",
    "QUANTIZED_BACKENDS",
    "EmbeddingModel",
    "resolve_model_path",
    "vector_space",
]
