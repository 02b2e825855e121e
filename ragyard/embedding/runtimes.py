"""Run an exported sentence-embedding graph (ragyard/embedding/export.py): ONNX Runtime or OpenVINO on CPU.

Both take the tokenizer's arrays and return the pipeline's sentence vectors. Threads: one per CPU this
process may use unless configured; neither runtime's threads spin while they wait (on cores other
processes share, spinning threads take the CPU their preempted peers need, as torch's OpenMP threads
did: docs/benchmarks.md, Embedder).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from ragyard.embedding.export import ONNX_FILE, OPENVINO_FILE


class GraphRunner(Protocol):
    precision: str  # what the runtime computes in

    def __call__(self, inputs: dict[str, np.ndarray]) -> np.ndarray: ...


def default_threads() -> int:
    return len(os.sched_getaffinity(0))


class OnnxRuntimeRunner:
    precision = "f32"  # the quantized graph's int8 is the backend's to name

    def __init__(self, folder: Path, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(folder / ONNX_FILE), options, providers=["CPUExecutionProvider"])

    def __call__(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(None, inputs)[0]  # thread-safe: the bento's batches may overlap


class OpenVinoRunner:
    def __init__(self, folder: Path, threads: int) -> None:
        import openvino as ov

        # LATENCY: one stream uses every thread for each batch, the way the embedding loop calls it.
        # The inference precision is the plugin's default for this processor (bf16 where it has AMX).
        config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
        self.compiled = ov.Core().compile_model(folder / OPENVINO_FILE, "CPU", config)
        self.precision = self.compiled.get_property("INFERENCE_PRECISION_HINT").to_string()

    def __call__(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        # A request per call: an infer request is not shared between threads.
        return np.array(self.compiled.create_infer_request().infer(inputs)[0])


RUNNERS: dict[str, Callable[[Path, int], GraphRunner]] = {
    "onnx": OnnxRuntimeRunner,
    "onnx-int8": OnnxRuntimeRunner,
    "openvino": OpenVinoRunner,
}
