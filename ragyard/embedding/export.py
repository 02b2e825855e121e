"""Offline exports of a sentence-transformers model for the ONNX Runtime and OpenVINO backends.

An export is built once from the local model folder (the packaged all-MiniLM-L6-v2, or any
sentence-transformers folder), never from a model hub, into
``<models_dir>/embedding/<model>-<digest>/<backend>/``. The digest covers every file of the model
folder, the recipe below and the versions of the libraries that build and run it, so new weights or
a new recipe get a new folder instead of a stale reuse. The graph is the model's whole
sentence-transformers pipeline (transformer, pooling, and normalization or dense layers if it has
them): token ids in, sentence vectors out, exactly what `SentenceTransformer.encode` computes.

Each folder holds the graph, the tokenizer (with the model's maximum length and lower-casing) and
`embedding.json`; `manifest.json`, written last, holds the SHA-256 of every other file. A folder
whose files do not match its manifest (a build killed half-way, a corrupted disk) is rebuilt. A file
lock makes processes that start together wait for one build.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path

from filelock import FileLock

# Bump when the way an export is built changes: existing exports are then rebuilt, not reused.
RECIPE_VERSION = 1
EXPORTED_BACKENDS = ("onnx", "onnx-int8", "openvino")
MANIFEST = "manifest.json"
CONFIG = "embedding.json"
ONNX_FILE = "model.onnx"
OPENVINO_FILE = "model.xml"
_LIBRARIES = {
    "onnx": ("torch", "transformers", "sentence-transformers", "onnxruntime"),
    "onnx-int8": ("torch", "transformers", "sentence-transformers", "onnxruntime"),
    "openvino": ("torch", "transformers", "sentence-transformers", "openvino"),
}
_HASH_CHUNK = 1 << 20


class ExportError(RuntimeError):
    """The model cannot be exported for the backend; the message says why and what to use instead."""


def export_folder(name: str, model_path: str, backend: str, models_dir: Path) -> Path:
    """The export of the model `name` (its folder: `model_path`) for `backend` under `models_dir`:
    reused when it is intact, built (or rebuilt) otherwise."""
    source, target = Path(model_path), export_path(name, model_path, backend, models_dir)
    root = target.parent
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f"{backend}.lock")):
        if is_intact(target):
            return target
        shutil.rmtree(target, ignore_errors=True)
        with tempfile.TemporaryDirectory(dir=root, prefix=f".{backend}-") as scratch:
            partial = Path(scratch) / backend
            partial.mkdir()
            _build(source, backend, partial, Path(scratch))
            _write_manifest(partial)
            partial.rename(target)
    return target


def export_path(name: str, model_path: str, backend: str, models_dir: Path) -> Path:
    """Where the export of the model `name` (its folder: `model_path`) for `backend` is kept: a folder
    named by the model and a digest of what the export depends on. Nothing is built."""
    if backend not in EXPORTED_BACKENDS:
        raise ExportError(f"backend {backend!r} has no export; exported backends: {', '.join(EXPORTED_BACKENDS)}")
    source = Path(model_path)
    if not (source / "modules.json").is_file():
        raise ExportError(
            f"backend {backend!r} exports from a local sentence-transformers folder (one with a "
            f"modules.json); {model_path!r} is not one. Use backend 'torch' for it."
        )
    return models_dir / "embedding" / f"{_slug(Path(name).name)}-{_digest(source, backend)}" / backend


def read_config(folder: Path) -> dict:
    """What the runtime needs besides the graph: input names, maximum length, dimension."""
    return json.loads((folder / CONFIG).read_text())


def is_intact(folder: Path) -> bool:
    """True when the folder has its manifest and every file in it hashes to what the manifest says."""
    try:
        expected = json.loads((folder / MANIFEST).read_text())["files"]
        present = {p.name for p in folder.iterdir() if p.name != MANIFEST}
        return present == set(expected) and all(
            _file_sha256(folder / name) == digest for name, digest in expected.items()
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:64] or "model"


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_HASH_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _digest(source: Path, backend: str) -> str:
    """What an export depends on: the model's files, the recipe, the libraries' versions."""
    digest = hashlib.sha256(f"recipe {RECIPE_VERSION}\0{backend}\0".encode())
    for library in _LIBRARIES[backend]:
        digest.update(f"{library}=={_version(library)}\0".encode())
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(source).as_posix()}\0{_file_sha256(path)}\0".encode())
    return digest.hexdigest()[:16]


def _version(library: str) -> str:
    try:
        return importlib.metadata.version(library)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def _write_manifest(folder: Path) -> None:
    files = {p.name: _file_sha256(p) for p in sorted(folder.iterdir()) if p.is_file()}
    (folder / MANIFEST).write_text(json.dumps({"recipe": RECIPE_VERSION, "files": files}, indent=1))


def _build(source: Path, backend: str, out: Path, scratch: Path) -> None:
    raw = scratch / "raw.onnx"
    _export_onnx(source, raw, out)
    if backend == "openvino":
        _require("openvino", backend)
        import openvino as ov

        # OpenVINO reads the plain ONNX graph (not ONNX Runtime's fused operators); weights stay fp32
        # on disk, and the CPU plugin picks its inference precision for the processor at load.
        ov.save_model(ov.convert_model(raw), out / OPENVINO_FILE, compress_to_fp16=False)
        return
    _require("onnxruntime", backend)
    fused = scratch / "fused.onnx"
    _fuse(source, raw, fused)
    if backend == "onnx":
        shutil.copyfile(fused, out / ONNX_FILE)
    else:
        _quantize_int8(fused, out / ONNX_FILE)


def _require(module: str, backend: str) -> None:
    try:
        __import__(module)
    except ImportError as exc:
        raise ExportError(
            f"backend {backend!r} needs the {module} package (pip install 'ragyard[embedding]'): {exc}"
        ) from exc


def _export_onnx(source: Path, target: Path, out: Path) -> None:
    """The model's sentence-transformers pipeline as one ONNX graph, and its tokenizer beside it."""
    import torch
    from sentence_transformers import SentenceTransformer

    # Eager attention traces into the plain pattern ONNX Runtime's optimizer fuses into its Attention
    # operator; sdpa traces into a graph neither runtime speeds up.
    model = SentenceTransformer(str(source), device="cpu", model_kwargs={"attn_implementation": "eager"}).eval()
    tokenizer = model.tokenizer
    if tokenizer is None:
        raise ExportError(f"{source} has no text tokenizer: only text models export; use backend 'torch'")
    names = list(tokenizer.model_input_names)

    class SentenceVectors(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs):
            return self.model(dict(zip(names, inputs, strict=True)))["sentence_embedding"]

    example = tokenizer(
        ["a short text", "a somewhat longer text, for a padded batch"], padding=True, return_tensors="pt"
    )
    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    # The tracer warns about shape checks it records as constants; the graph is checked against torch's
    # vectors on texts of every length (tests/test_embedding_backends.py).
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            SentenceVectors(),
            tuple(example[n] for n in names),
            str(target),
            input_names=names,
            output_names=["sentence_embedding"],
            dynamic_axes={**axes, "sentence_embedding": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    tokenizer.model_max_length = model.max_seq_length
    tokenizer.save_pretrained(out)
    dim, max_seq_length = model.get_embedding_dimension(), model.max_seq_length
    if dim is None or max_seq_length is None:
        raise ExportError(f"{source}: not a sentence-embedding model (no embedding dimension or sequence length)")
    config = {"inputs": names, "max_seq_length": int(max_seq_length), "dim": int(dim)}
    (out / CONFIG).write_text(json.dumps(config, indent=1))


def _fuse(source: Path, raw: Path, target: Path) -> None:
    """ONNX Runtime's transformer optimizer fuses attention, layer norms and GELU into its own operators
    (BERT models, such as MiniLM; other architectures keep the plain graph, which the session still
    optimizes)."""
    from onnxruntime.transformers import optimizer

    config = json.loads((source / "config.json").read_text())
    if config.get("model_type") != "bert":
        shutil.copyfile(raw, target)
        return
    fused = optimizer.optimize_model(
        str(raw),
        model_type="bert",
        num_heads=int(config["num_attention_heads"]),
        hidden_size=int(config["hidden_size"]),
        opt_level=1,
    )
    fused.save_model_to_file(str(target))


def _quantize_int8(fused: Path, target: Path) -> None:
    """Dynamic int8: weights quantized once, activations per batch; no calibration data needed."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The fused operators carry no type information for the quantizer's shape inference: float says what
    # their outputs are.
    quantize_dynamic(
        fused, target, weight_type=QuantType.QInt8, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT}
    )
    for stray in target.parent.glob("*.onnx.data"):  # the quantizer's external-data scratch, if any
        os.remove(stray)
