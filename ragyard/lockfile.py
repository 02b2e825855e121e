"""Reading the locks that `make lock` writes (uv's hashed requirements files), and comparing two.

`python -m ragyard.lockfile diff OLD NEW` lists what a new resolution would change (`make
lock-check` prints it); the tests use `read_lock` to check that every deployable's lock agrees with
the environment's lock and that the environment holds exactly what the lock says.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name
from pip_requirements_parser import RequirementsFile


@dataclass(frozen=True)
class Pin:
    """One locked distribution: its exact version and the SHA-256 hashes of its files."""

    name: str  # canonical (PEP 503) name
    version: str
    hashes: frozenset[str]


class LockError(ValueError):
    """A lock entry that is not an exact, hashed pin."""


def read_lock(path: Path) -> dict[str, Pin]:
    """Every pin of a lock, by canonical name."""
    pins: dict[str, Pin] = {}
    for requirement in RequirementsFile.from_file(str(path)).requirements:
        specifiers = list(requirement.specifier)
        if len(specifiers) != 1 or specifiers[0].operator != "==" or not requirement.hash_options:
            raise LockError(f"{path}: {requirement.line!r} is not an exact pin with hashes")
        name = canonicalize_name(requirement.name)
        pins[name] = Pin(name, specifiers[0].version, frozenset(requirement.hash_options))
    return pins


def changes(old: dict[str, Pin], new: dict[str, Pin]) -> list[str]:
    """One line per distribution added, removed or moved to another version."""
    lines = []
    for name in sorted(old.keys() | new.keys()):
        before, after = old.get(name), new.get(name)
        if before is None and after is not None:
            lines.append(f"+ {name}=={after.version}")
        elif after is None and before is not None:
            lines.append(f"- {name}=={before.version}")
        elif before is not None and after is not None and before.version != after.version:
            lines.append(f"~ {name} {before.version} -> {after.version}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ragyard.lockfile")
    commands = parser.add_subparsers(dest="command", required=True)
    diff = commands.add_parser("diff", help="what NEW changes against OLD")
    diff.add_argument("old", type=Path)
    diff.add_argument("new", type=Path)
    args = parser.parse_args(argv)
    lines = changes(read_lock(args.old), read_lock(args.new))
    print("\n".join(lines) if lines else "no change: the lock already has the newest allowed versions")
    print(f"{len(lines)} distribution(s) would change")
    return 0


if __name__ == "__main__":
    sys.exit(main())
