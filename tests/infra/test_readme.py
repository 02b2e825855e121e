"""The README documents the project's two commands (what they do: tests/integration/test_readme_commands.py)."""

from tests.support.paths import REPO_ROOT


def test_readme_names_the_two_commands():
    readme = (REPO_ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
