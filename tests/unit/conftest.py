"""Unit tests run in the pytest process only: one that starts a program belongs in tests/integration."""

from __future__ import annotations

import platform
import subprocess
from typing import Any, NoReturn

import pytest

# The standard library asks `uname -p` once per process, cached, for platform.platform(); MLflow's
# telemetry calls it when first imported. Asked here, before any test, so that whichever unit test
# imports MLflow first in a worker is not taken for one that starts a process.
platform.processor()


@pytest.fixture(autouse=True)
def no_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: subprocess.Popen[Any], args: Any, *_args: Any, **_kwargs: Any) -> NoReturn:
        raise AssertionError(f"a unit test started a process ({args!r}): it belongs in tests/integration")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
