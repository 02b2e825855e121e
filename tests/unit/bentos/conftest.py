"""Fixtures of the LLM bento's unit tests."""

import hashlib

import pytest

from bentos.llm import models
from bentos.llm.models import PackagedModel


@pytest.fixture
def sliced_model(tmp_path, monkeypatch):
    """A split model laid out like the Qwen packages (package/data/partNN.bin), from a few bytes."""
    slices = [b"GGUF-head-", b"middle-", b"tail"]
    for i, data in enumerate(slices, 1):
        folder = tmp_path / "site" / f"fake_part{i}" / "data"
        folder.mkdir(parents=True)
        (folder / f"part{i:02d}.bin").write_bytes(data)
    monkeypatch.setattr(models, "package_dir", lambda package: tmp_path / "site" / package.replace("-", "_"))
    joined = b"".join(slices)
    model = PackagedModel(
        "fake", "fake.gguf", hashlib.sha256(joined).hexdigest(), tuple(f"fake-part{i}" for i in range(1, 4)), "1.0"
    )
    return model, joined
