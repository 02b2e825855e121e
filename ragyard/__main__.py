"""`python -m ragyard`: the `ragyard` command (ragyard/cli)."""

import sys

from ragyard.cli import main

if __name__ == "__main__":
    sys.exit(main())
