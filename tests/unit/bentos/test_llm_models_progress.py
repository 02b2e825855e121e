"""`ragyard models install` shows its progress: a bar of bytes per model and step
(assembling the byte slices, verifying the SHA-256), each run to its end."""

import io
import os
import subprocess
import sys

from rich.console import Console
from rich.progress import Progress

from bentos.llm.models import install
from tests.conftest import REPO_ROOT
from tests.test_llm_parts import sliced_model  # noqa: F401 - a fixture


def bars(progress: Progress) -> list[tuple[str, float, float | None]]:
    return [(task.description, task.completed, task.total) for task in progress.tasks]


def test_assembling_and_verifying_a_split_model_advance_their_bars_to_the_end(sliced_model, tmp_path):  # noqa: F811
    model, joined = sliced_model
    models_dir = tmp_path / "models"
    with Progress(console=Console(file=io.StringIO())) as progress:
        path = install(model, models_dir, log=lambda _: None, progress=progress)
    assert path.read_bytes() == joined
    assert bars(progress) == [("fake: assembling 3 slices and hashing them", len(joined), len(joined))]

    path.with_name(path.name + ".sha256").unlink()  # no stamp: the assembled file is verified again
    with Progress(console=Console(file=io.StringIO())) as progress:
        install(model, models_dir, log=lambda _: None, progress=progress)
    assert bars(progress) == [("fake: verifying SHA-256", len(joined), len(joined))]


def test_the_install_command_shows_a_verification_bar_per_model(smollm2_path, tmp_path):
    env = {**os.environ, "RAGYARD_HOME": str(tmp_path), "COLUMNS": "160"}
    done = subprocess.run([sys.executable, "-m", "ragyard", "models", "install", "--only", "smollm2-135m"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    megabytes = f"{smollm2_path.stat().st_size / 1e6:.1f}"
    # Not a terminal: rich prints the bars once, finished.
    assert "smollm2-135m: verifying SHA-256" in done.stdout
    assert f"{megabytes}/{megabytes} MB" in done.stdout
    assert f"smollm2-135m: {smollm2_path} verified" in done.stdout.replace("\n", "")
