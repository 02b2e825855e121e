"""`ragyard models install` shows its progress as a command: a verification bar per model."""

import os

from tests.support.cli import ragyard


def test_the_install_command_shows_a_verification_bar_per_model(smollm2_path, tmp_path):
    env = {**os.environ, "RAGYARD_HOME": str(tmp_path), "COLUMNS": "160"}
    done = ragyard("models", "install", "--only", "smollm2-135m", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    megabytes = f"{smollm2_path.stat().st_size / 1e6:.1f}"
    # Not a terminal: rich prints the bars once, finished.
    assert "smollm2-135m: verifying SHA-256" in done.stdout
    assert f"{megabytes}/{megabytes} MB" in done.stdout
    assert f"smollm2-135m: {smollm2_path} verified" in done.stdout.replace("\n", "")
