"""The `ragyard` command: one composition root whose commands import only what they need."""

import json
import subprocess
import sys

from ragyard.cli import COMMANDS
from tests.support.cli import ragyard
from tests.support.paths import REPO_ROOT


def test_help_lists_every_command():
    shown = ragyard("--help")
    assert shown.returncode == 0
    assert all(f"    {name} " in shown.stdout for name in COMMANDS), shown.stdout


def test_a_command_imports_only_its_own_packages():
    """The router's image ships `keys` and not the evals, pipelines or benchmarks: choosing it must not
    import them (nor any other command's module)."""
    code = (
        "import sys; from ragyard.cli import parser; parser(['keys', 'list']); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'evals', 'pipelines', 'benchmarks', 'bentos'}), "
        "sorted(m for m in sys.modules if m.startswith('ragyard.cli.')))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert loaded.stdout.split() == ["[]", "['ragyard.cli.keys']"]


def test_keys_refuses_a_negative_limit_and_lists_what_it_made(tmp_path):
    env = {"RAGYARD_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    refused = ragyard("keys", "create", "--name", "app", "--budget", "-1", env=env)
    assert refused.returncode == 2 and "--budget: must not be negative" in refused.stderr
    made = json.loads(ragyard("keys", "create", "--name", "app", "--rpm", "5", "--json", env=env).stdout)
    (listed,) = json.loads(ragyard("keys", "list", "--json", env=env).stdout)
    assert (listed["id"], listed["name"], listed["rpm"]) == (made["id"], "app", 5)
