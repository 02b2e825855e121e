"""The `ragyard` command, run as a user runs it: `python -m ragyard ARGS` in a process of its own."""

import subprocess
import sys

from tests.support.paths import REPO_ROOT


def ragyard(
    *args: str, env: dict[str, str] | None = None, check: bool = False, timeout_s: float = 300
) -> subprocess.CompletedProcess[str]:
    """`python -m ragyard ARGS` from the repository root; `env` replaces the environment when given."""
    return subprocess.run(
        [sys.executable, "-m", "ragyard", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=check,
    )
