"""A real documentation set the tests did not write, ingested whole: Debian's `debian-reference-en`
(the Debian Reference: 17 DocBook HTML pages with large tables, a PDF of the same, images, CSS and
a gzipped text copy), pointed at as a user would, every file included."""

from pathlib import Path

import pytest

from pipelines.materialize import asset_metadata, check_outcomes
from ragyard.settings import ChunkerSettings, SourceSettings
from tests.support.ingest import ALL_CHECKS, index_metadata, run_ingest, skipped_reasons

PACKAGE = "debian-reference-en"  # installed by the Makefile's APT_PACKAGES
FOLDER = Path("/usr/share/debian-reference")
PARSED = (".html", ".pdf")


def test_a_real_documentation_set_is_indexed_whole_and_nothing_is_lost(settings):
    if not (FOLDER / "index.en.html").is_file():
        pytest.fail(
            f"the Debian package {PACKAGE} is not installed (`make setup` installs it; or `apt-get install {PACKAGE}`)"
        )
    settings.ingest.sources = [SourceSettings(name="debian-reference", path=FOLDER, include=["*"])]
    settings.chunker = ChunkerSettings()  # the defaults, as `make run` indexes
    result = run_ingest(settings)
    documents, index = asset_metadata(result, "documents"), index_metadata(result)
    files = [p for p in FOLDER.rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert documents["files_seen"] == len(files)
    # Every file is indexed or skipped with its reason; every page and the PDF are indexed.
    assert index["indexed_documents"] + index["skipped_files"] == documents["files_seen"]
    assert index["indexed_documents"] == sum(p.name.endswith(PARSED) for p in files) >= 17
    reasons = skipped_reasons(result)
    assert set(reasons.values()) == {"no parser for this file type"}
    assert all(not path.endswith(PARSED) for path in reasons)  # images, the stylesheet, the .txt.gz
    assert index["failed_documents"] == 0 and index["total_chunks"] > 1000
    assert check_outcomes(result) == ALL_CHECKS
