"""The floor plan is enforced: every import points down the layers of pyproject.toml's import-linter
contracts (docs/architecture.md), and a wrong-way import breaks them."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.paths import REPO_ROOT, VENV_BIN

PACKAGES = ("ragyard", "pipelines", "router", "bentos", "evals", "benchmarks")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / "lint-imports"), "--no-cache", "--no-logo"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_every_import_points_down():
    result = lint_imports(REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("module", "statement", "contract"),
    [
        ("ragyard/wrong.py", "import router.flow", "Layers point down"),  # the ground floor reaching up
        ("pipelines/wrong.py", "from evals import harness", "Layers point down"),
        ("router/wrong.py", "import pipelines.ledger", "Layers point down"),  # two libraries on one floor
        ("evals/wrong.py", "import benchmarks.measure", "Layers point down"),
        ("bentos/retriever/wrong.py", "from bentos.embedder import cache", "Each bento stands alone"),
        ("evals/wrong.py", "import bentos.safety.service", "service module is an entry point"),
    ],
)
def test_a_wrong_way_import_breaks_a_contract(tmp_path, module, statement, contract):
    for package in PACKAGES:
        shutil.copytree(REPO_ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path)
    (tmp_path / module).write_text(f'"""A module that imports the wrong way."""\n\n{statement}\n')
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    report = result.stdout.split("Broken contracts", 1)[-1]
    importer = module.removesuffix(".py").replace("/", ".")
    assert contract in report and re.search(rf"^-\s+{re.escape(importer)} -> ", report, re.M), result.stdout
