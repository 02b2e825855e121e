"""`ragyard models install` shows its progress: a bar of bytes per model and step
(assembling the byte slices, verifying the SHA-256), each run to its end."""

import io

from rich.console import Console
from rich.progress import Progress

from bentos.llm.models import install


def bars(progress: Progress) -> list[tuple[str, float, float | None]]:
    return [(task.description, task.completed, task.total) for task in progress.tasks]


def test_assembling_and_verifying_a_split_model_advance_their_bars_to_the_end(sliced_model, tmp_path):
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
