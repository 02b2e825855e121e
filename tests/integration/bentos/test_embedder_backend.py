"""The embedder bento serves the configured backend (RAGYARD_EMBEDDER__BACKEND), from the session's
shared export (tests/conftest.py), not the default one."""

import httpx
import numpy as np
import pytest

from ragyard.embedding import EmbeddingModel
from ragyard.settings import Settings
from tests.support.stack import Stack

MODEL = "all-MiniLM-L6-v2"
TEXTS = [
    "How do I read a file line by line in Python?",
    "x",
    "The with statement wraps a block in the methods of a context manager. " * 4,
    "Générateurs et itérateurs : yield suspend la fonction.",
]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def int8_embedder(tmp_path_factory):
    with Stack(tmp_path_factory.mktemp("embedder-int8")) as stack:
        yield stack.bento("bentos.embedder.service:Embedder", env={"RAGYARD_EMBEDDER__BACKEND": "onnx-int8"})


def test_the_bento_serves_the_configured_backend(int8_embedder, monkeypatch, tmp_path):
    monkeypatch.setenv("RAGYARD_EMBEDDER__BACKEND", "onnx-int8")
    local = EmbeddingModel.from_settings(Settings(home=tmp_path)).encode(TEXTS)  # the shared export
    response = httpx.post(f"{int8_embedder}/embed", json={"texts": TEXTS}, timeout=60)
    assert response.status_code == 200, response.text
    served = np.asarray(response.json()["embeddings"], dtype=np.float32)
    # The int8 model's own vectors (activations are quantized per batch: a batch of the same texts)...
    assert cosines(served, local).min() > 0.999
    # ...which are not torch's: the bento did not fall back to another backend.
    assert cosines(served, EmbeddingModel(MODEL).encode(TEXTS)).min() < 0.999
