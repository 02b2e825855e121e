"""The embedding backends in this process: exports built offline from the packaged weights, reused,
rebuilt when damaged; vectors that agree with torch's; one backend setting for the ingestion and the
embedder bento; the index fingerprint. The exports live in the session's shared models folder
(RAGYARD_EMBEDDER__MODELS_DIR, tests/conftest.py): built once, not once per test."""

import json
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from pipelines.resources import ingest_resources
from pipelines.sources import configured_fingerprint
from ragyard.embedding import EmbeddingModel, resolve_model_path, vector_space
from ragyard.embedding.export import MANIFEST, ExportError, export_folder, export_path, is_intact
from ragyard.settings import EmbedderBentoSettings, EmbedderSettings, EmbeddingBackend, IngestionSettings, Settings

MODEL = "all-MiniLM-L6-v2"
# Every length the tokenizer treats differently: empty, one word, typical chunks, past the 256-token cut,
# non-ASCII; in an order that is not by length, so the length-sorted batches must be put back in order.
TEXTS = [
    "How do I read a file line by line in Python?",
    "",
    "x",
    "The with statement wraps a block in the methods of a context manager: __enter__ runs before the "
    "block and __exit__ after it, even when the block raises. " * 3,
    "Générateurs et itérateurs : yield suspend la fonction — 生成器 — и возобновляет её.",
    "asyncio " * 600,
    "a list comprehension builds a list from an iterable",
]
# What each exported backend must keep of torch's vectors, per text (cosine). ONNX Runtime in fp32 computes
# the same graph; OpenVINO may compute in bf16 (processors with AMX); dynamic int8 loses more
# (docs/evals.md, Backends, has what that costs the retrieval eval).
AGREEMENT = {"onnx": 0.9999, "openvino": 0.999, "onnx-int8": 0.85}


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    """The session's shared models folder (RAGYARD_EMBEDDER__MODELS_DIR), not one under this home."""
    settings = Settings(home=tmp_path_factory.mktemp("home"))
    folder = settings.embedder.models_folder(settings.home)
    assert not folder.is_relative_to(settings.home), "tests/conftest.py sets RAGYARD_EMBEDDER__MODELS_DIR"
    return folder


@pytest.fixture(scope="module")
def torch_vectors() -> np.ndarray:
    return EmbeddingModel(MODEL).encode(TEXTS)


@pytest.fixture
def no_network(monkeypatch):
    """Any connection off this machine fails: an export must need no model hub."""
    connect = socket.socket.connect

    def loopback_only(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            raise OSError(f"network access to {address[0]} during an offline export")
        return connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", loopback_only)


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8", "openvino"])
def test_an_exported_backend_agrees_with_torch_text_by_text(backend, models_dir, torch_vectors, no_network):
    model = EmbeddingModel(MODEL, backend=backend, models_dir=models_dir, batch_size=3)
    assert (model.dim, model.max_seq_length) == (384, 256)
    vectors = model.encode(TEXTS)
    assert vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    agreement = cosines(vectors, torch_vectors)
    assert agreement.min() > AGREEMENT[backend], agreement
    assert model.encode([]).shape == (0, 384)


def test_the_export_is_built_once_and_reused(models_dir, no_network):
    first = export_folder(MODEL, resolve_model_path(MODEL), "openvino", models_dir)
    stamps = {p.name: p.stat().st_mtime_ns for p in first.iterdir()}
    again = export_folder(MODEL, resolve_model_path(MODEL), "openvino", models_dir)
    assert again == first and {p.name: p.stat().st_mtime_ns for p in again.iterdir()} == stamps
    manifest = json.loads((first / MANIFEST).read_text())
    assert {"model.xml", "model.bin", "embedding.json", "tokenizer.json"} <= set(manifest["files"])
    assert first.parent.name.startswith(f"{MODEL}-")  # named by the model and a digest of its files


@pytest.fixture
def private_export(models_dir, tmp_path) -> tuple[Path, Path]:
    """(models folder, export folder): a copy of the shared ONNX export, for a test to damage."""
    shared = export_folder(MODEL, resolve_model_path(MODEL), "onnx", models_dir)
    private = tmp_path / "models"
    folder = private / shared.relative_to(models_dir)
    shutil.copytree(shared, folder)
    assert is_intact(folder)
    return private, folder


@pytest.mark.parametrize("damage", ["corrupt the graph", "delete the graph", "delete the manifest", "stray file"])
def test_a_damaged_export_is_not_intact(damage, private_export):
    _, folder = private_export
    graph = folder / "model.onnx"
    if damage == "corrupt the graph":
        with graph.open("r+b") as f:
            f.seek(graph.stat().st_size // 2)
            f.write(b"\0" * 4096)
    elif damage == "delete the graph":
        graph.unlink()
    elif damage == "delete the manifest":  # a build killed before it wrote the manifest
        (folder / MANIFEST).unlink()
    else:
        (folder / "leftover.partial").write_bytes(b"half a file")
    assert not is_intact(folder)


def test_a_damaged_export_is_rebuilt_before_it_is_loaded(private_export, torch_vectors, no_network):
    models, folder = private_export
    with (folder / "model.onnx").open("r+b") as f:
        f.seek(1024)
        f.write(b"\0" * 4096)
    (folder / "leftover.partial").write_bytes(b"half a file")
    model = EmbeddingModel(MODEL, backend="onnx", models_dir=models)
    assert is_intact(folder) and not (folder / "leftover.partial").exists()
    assert cosines(model.encode(TEXTS), torch_vectors).min() > AGREEMENT["onnx"]


def test_other_model_files_get_an_export_of_their_own(models_dir, tmp_path):
    def digest(export: Path) -> str:
        return export.parent.name.rsplit("-", 1)[1]

    packaged = export_path(MODEL, resolve_model_path(MODEL), "openvino", models_dir)
    copy = tmp_path / "my-minilm"
    shutil.copytree(resolve_model_path(MODEL), copy)
    same_files = export_path(str(copy), str(copy), "openvino", models_dir)
    assert same_files.parent.name.startswith("my-minilm-") and digest(same_files) == digest(packaged)
    (copy / "README.md").write_text("a model of our own\n")
    assert digest(export_path(str(copy), str(copy), "openvino", models_dir)) != digest(packaged)
    assert digest(export_path(MODEL, resolve_model_path(MODEL), "onnx", models_dir)) != digest(packaged)


def test_a_model_without_local_files_is_refused_with_what_to_do(models_dir):
    with pytest.raises(ExportError, match="local sentence-transformers folder.*backend 'torch'"):
        EmbeddingModel("some-org/some-hub-model", backend="onnx", models_dir=models_dir)
    with pytest.raises(ValueError, match="runs on the CPU"):
        EmbeddingModel(MODEL, backend="openvino", device="cuda", models_dir=models_dir)
    with pytest.raises(ValueError, match="not one of"):
        EmbeddingModel(MODEL, backend="tensorrt", models_dir=models_dir)


def test_the_backend_setting_is_checked(monkeypatch):
    monkeypatch.setenv("RAGYARD_EMBEDDER__BACKEND", "tensorrt")
    with pytest.raises(ValidationError, match="backend"):
        Settings()


def test_the_ingestion_and_the_embedder_bento_read_one_backend_setting(monkeypatch, tmp_path):
    monkeypatch.setenv("RAGYARD_HOME", str(tmp_path))
    monkeypatch.setenv("RAGYARD_EMBEDDER__BACKEND", "onnx-int8")
    monkeypatch.setenv("RAGYARD_EMBEDDER__THREADS", "1")
    resource = ingest_resources(IngestionSettings())["embedder"]
    bento = EmbedderBentoSettings()
    assert resource.backend == bento.embedder.backend == "onnx-int8"
    assert resource.threads == bento.embedder.threads == 1
    assert Path(resource.models_dir) == bento.embedder.models_folder(bento.home)


def test_only_a_quantized_backend_changes_what_the_index_was_made_with(tmp_path):
    def fingerprint(backend: EmbeddingBackend) -> str:
        return configured_fingerprint(Settings(home=tmp_path, embedder=EmbedderSettings(backend=backend)))

    # The full-precision backends make torch's vectors to within float rounding: switching keeps the index.
    assert vector_space(MODEL, "openvino") == vector_space(MODEL, "onnx") == vector_space(MODEL, "torch") == MODEL
    assert fingerprint("openvino") == fingerprint("torch") == fingerprint("onnx")
    # int8 vectors are not torch's: switching to it, or back, re-embeds.
    assert vector_space(MODEL, "onnx-int8") != MODEL and fingerprint("onnx-int8") != fingerprint("torch")
