"""What a deployable's code imports, read from the source (every import statement, those inside
functions too, since a lazy import fails just as hard in an image that lacks the package).

Starting from a module, `closure` follows our own imports (ragyard, pipelines, bentos, router,
evals, benchmarks) file by file and collects the third-party top-level modules they name.
"""

from __future__ import annotations

import ast
import importlib.metadata
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from packaging.utils import canonicalize_name

FIRST_PARTY = ("ragyard", "pipelines", "bentos", "router", "evals", "benchmarks")


@dataclass
class Closure:
    files: set[Path] = field(default_factory=set)  # our modules reached, as files
    missing: set[str] = field(default_factory=set)  # our modules named but not found
    third_party: set[str] = field(default_factory=set)  # top-level module names


def module_file(root: Path, module: str) -> Path | None:
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_names(root: Path, path: Path) -> set[str]:
    """Absolute module names the import statements of `path` name (relative imports resolved); for
    `from a import b` also `a.b`, which may be a submodule or just a name."""
    package = path.parent.relative_to(root).parts
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def closure(root: Path, start: str) -> Closure:
    """Everything reachable from module `start` of the source tree at `root`."""
    result = Closure()
    pending, seen = [start], set()
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        top = module.split(".")[0]
        if top not in FIRST_PARTY:
            if top not in sys.stdlib_module_names and top != "__future__":
                result.third_party.add(top)
            continue
        path = module_file(root, module)
        if path is None:
            parent = module.rpartition(".")[0]
            if not parent or module_file(root, parent) is None:  # not `from package import a_name`
                result.missing.add(module)
            continue
        result.files.add(path)
        # A package's __init__ runs first when one of its modules is imported.
        parts = module.split(".")
        pending.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        pending.extend(_imported_names(root, path))
    return result


@cache
def _providers() -> Mapping[str, list[str]]:
    return importlib.metadata.packages_distributions()


def providers(module: str) -> set[str]:
    """The canonical names of the installed distributions that provide top-level `module`."""
    return {canonicalize_name(d) for d in _providers().get(module, [])}
