"""Write measured figures into docs/ (benchmarks.md, evals.md), one section per benchmark or eval,
stamped with the machine and the date. Benchmarks and evals both use it, so it lives on the ground floor."""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
from pathlib import Path

REPORT = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
_HEADER = "# Benchmarks\n\nWritten by `make bench`; each section is replaced when its benchmark runs again.\n"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {memory_gib:.0f} GiB, Python {platform.python_version()}"


def write_section(title: str, body: str, report: Path = REPORT, header: str = _HEADER) -> None:
    """Replace (or append) the section `## title` of `report` with `body`, stamped with date and machine."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = f"## {title}\n\n_Measured {stamp} on {machine()}._\n\n{body.strip()}\n"
    text = report.read_text() if report.exists() else header
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(text)
