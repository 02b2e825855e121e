"""Where the repository and this environment's programs are."""

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# The environment running the tests: its bentoml, milvus-lite, lint-imports, kubectl ...
VENV_BIN = Path(sys.executable).parent
