"""`bentoml build` of each bento, offline, into a temporary BENTOML_HOME: the built bento holds its service.

Besides what `bentoml get` reports, the bento's `src/` must import its service on its own: every
`bentos.*` and `ragyard.*` module the service loads has to come from the bento, not the repository.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ragyard.lockfile import read_lock
from tests.support.paths import REPO_ROOT, VENV_BIN

BENTOS = {
    "embedder": ("ragyard-embedder", "bentos.embedder.service:Embedder", {"/embed", "/encode_batch"}),
    "retriever": ("ragyard-retriever", "bentos.retriever.service:Retriever", {"/search"}),
    # The LLM and router bentos serve a mounted FastAPI app, whose routes are not in the bento's schema.
    "llm": ("ragyard-llm", "bentos.llm.service:LLM", set()),
    "safety": ("ragyard-safety", "bentos.safety.service:Safety", {"/check", "/check_batch"}),
    "router": ("ragyard-router", "bentos.router.service:Router", set()),
    "tools": ("ragyard-tools", "bentos.tools.service:Tools", set()),
    "memory": ("ragyard-memory", "bentos.memory.service:Memory", set()),
    "review": ("ragyard-review", "bentos.review.service:Review", set()),
}

# Run inside the bento's src/: import the service and list where our own modules came from.
_IMPORT_CHECK = """
import importlib, json, sys
sys.path.insert(0, ".")
module, _, attr = sys.argv[1].partition(":")
service = getattr(importlib.import_module(module), attr)
ours = {name: m.__file__ for name, m in list(sys.modules.items())
        if name.split(".")[0] in ("bentos", "ragyard") and getattr(m, "__file__", None)}
print(json.dumps({"service": service.name, "modules": ours}))
"""


def bentoml(home: Path, *args: str) -> str:
    env = {**os.environ, "BENTOML_HOME": str(home), "HF_HUB_OFFLINE": "1", "BENTOML_DO_NOT_TRACK": "True"}
    done = subprocess.run(
        [str(VENV_BIN / "bentoml"), *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"bentoml {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def bentoml_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bentoml-home")


@pytest.mark.parametrize("folder", sorted(BENTOS))
def test_bento_builds_offline_with_its_service_and_files(bentoml_home, folder):
    name, target, routes = BENTOS[folder]
    bentofile = REPO_ROOT / "bentos" / folder / "bentofile.yaml"
    wanted = yaml.safe_load(bentofile.read_text())
    tag = bentoml(bentoml_home, "build", "-f", str(bentofile), "-o", "tag", ".").strip().splitlines()[-1]
    tag = tag.removeprefix("__tag__:")
    assert tag.startswith(f"{name}:")

    info = json.loads(bentoml(bentoml_home, "get", tag, "-o", "json"))
    assert info["service"] == target and info["name"] == name
    assert info["labels"] == wanted["labels"]
    envs = {e["name"]: e["value"] for e in info["envs"]}
    assert envs == {e["name"]: e["value"] for e in wanted["envs"]} and envs["HF_HUB_OFFLINE"] == "1"  # never a hub
    assert routes <= {route["route"] for route in info["schema"]["routes"]}

    # Rich wraps long output at the terminal width: the path may come in several lines.
    bento = Path("".join(bentoml(bentoml_home, "get", tag, "-o", "path").split()))
    # The bento installs its lock, hashes and all; BentoML appends a pin of its own version, which
    # must be the one the lock has (pip and uv accept the repeat).
    lock = read_lock(REPO_ROOT / wanted["python"]["requirements_txt"])
    *ours, appended = (bento / "env" / "python" / "requirements.txt").read_text().rstrip().splitlines()
    assert appended == f"bentoml=={lock['bentoml'].version}"
    (bentoml_home / f"{folder}.lock").write_text("\n".join(ours) + "\n")
    assert read_lock(bentoml_home / f"{folder}.lock") == lock
    src = bento / "src"
    assert (src / "bentos" / folder / "service.py").read_bytes() == (
        REPO_ROOT / "bentos" / folder / "service.py"
    ).read_bytes()

    checked = subprocess.run(
        [sys.executable, "-c", _IMPORT_CHECK, target],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""},
    )
    assert checked.returncode == 0, checked.stderr[-3000:]
    loaded = json.loads(checked.stdout.strip().splitlines()[-1])
    assert loaded["service"] == target.rsplit(":", 1)[1]
    outside = {m: f for m, f in loaded["modules"].items() if not Path(f).resolve().is_relative_to(src.resolve())}
    assert not outside, f"modules the bento does not include: {outside}"
