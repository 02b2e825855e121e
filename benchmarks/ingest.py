"""Ingestion benchmark: the whole pipeline on the Python docs against the raw model on the same backend.

`ragyard bench ingest` (or `make bench`): a fresh data directory and milvus-lite server
(kept afterwards in $RAGYARD_BENCH_KEEP if set, e.g. to run the retrieval eval on the index),
then (1) a full build, (2) a re-run with nothing changed, (3) a re-run after editing one file,
and, in the same process, the raw `EmbeddingModel.encode` (the configured backend, RAGYARD_EMBEDDER__BACKEND)
of a seeded sample of the chunks the pipeline embedded (RAGYARD_BENCH_RAW_SAMPLE, default 3000; 0: all).
How each backend compares with torch on the same texts: `ragyard bench embedder`.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmarks.measure import env_int, load  # noqa: E402
from pipelines.chunking import chunk_document  # noqa: E402
from pipelines.materialize import asset_metadata, check_outcomes, materialize_ingest  # noqa: E402
from pipelines.resources import EmbedderResource, ingest_resources  # noqa: E402
from pipelines.sources import compute_delta, configured_fingerprint, scan_sources  # noqa: E402
from ragyard.docs_report import write_section  # noqa: E402
from ragyard.services import milvus_spec  # noqa: E402
from ragyard.settings import PYTHON_DOCS, IngestSettings, MilvusSettings, Settings, SourceSettings  # noqa: E402
from ragyard.supervisor import Supervisor  # noqa: E402


def _timed(function, *args):
    started = time.perf_counter()
    value = function(*args)
    return value, time.perf_counter() - started


def _all_chunk_texts(settings: Settings) -> list[str]:
    delta = compute_delta(
        scan_sources(settings.ingest.sources), {}, configured_fingerprint(settings), settings.ingest.max_file_bytes
    )
    return [c.text for d in delta.changed for c in chunk_document(d, settings.chunker)]


def _workspace():
    """A temporary folder, or RAGYARD_BENCH_KEEP (which must not exist yet) to keep the index."""
    keep = os.environ.get("RAGYARD_BENCH_KEEP")
    if not keep:
        return tempfile.TemporaryDirectory(prefix="ragyard-bench-")
    Path(keep).mkdir(parents=True)  # fails if it exists: a full build needs an empty index
    return contextlib.nullcontext(keep)


def main() -> None:
    original_source = Path(os.environ.get("RAGYARD_BENCH_SOURCE", PYTHON_DOCS))
    with _workspace() as tmp:
        source = Path(tmp) / "corpus"  # a copy, so that the one-file edit touches no installed file
        shutil.copytree(original_source, source)
        settings = Settings(
            home=Path(tmp) / "home",
            milvus=MilvusSettings(uri="http://127.0.0.1:19570", collection="bench_chunks"),
            ingest=IngestSettings(sources=[SourceSettings(name="python-docs", path=source)]),
        )
        # Both sides start with the model loaded (and its export built): the comparison is of the work,
        # not of start-up. The pipeline's resource loads the same model object.
        embedder = ingest_resources(settings)["embedder"]
        assert isinstance(embedder, EmbedderResource)
        model = embedder.loaded_model()
        load_before = load()
        with Supervisor(settings.logs_dir) as supervisor:
            supervisor.start_all([milvus_spec(settings)])
            full, full_s = _timed(materialize_ingest, settings)
            full_meta = asset_metadata(full, "vector_index")
            embed_meta = asset_metadata(full, "embeddings")
            idle, idle_s = _timed(materialize_ingest, settings)
            idle_meta = asset_metadata(idle, "vector_index")
            edited = next(source.rglob("*.rst.txt"), None) or next(p for p in source.rglob("*") if p.is_file())
            edited.write_bytes(edited.read_bytes() + b"\n\nAn edited paragraph for the benchmark.\n")
            one, one_s = _timed(materialize_ingest, settings)
            one_meta = asset_metadata(one, "vector_index")
            checks = check_outcomes(one)

        texts = _all_chunk_texts(settings)
        chunks = full_meta["embedded_chunks"]
        assert len(texts) == chunks, f"raw baseline has {len(texts)} texts, the pipeline embedded {chunks}"
        sample_size = env_int("RAGYARD_BENCH_RAW_SAMPLE", 3000) or len(texts)
        sample = random.Random(0).sample(texts, min(sample_size, len(texts)))
        _, raw_s = _timed(model.encode, sample)
    load_after = load()

    pipeline_rate, raw_rate = chunks / full_s, len(sample) / raw_s
    # (outside the f-string below: Python 3.11 takes no quotes of the same kind nested in one)
    checks_line = ", ".join(f"{name}: {'pass' if passed else 'FAIL'}" for name, passed in checks.items())
    body = f"""
Corpus: `{original_source}` ({full_meta["total_chunks"]} chunks); model {settings.embedder.model} on CPU,
backend **{settings.embedder.backend}** ({model.precision}), batch size {settings.embedder.batch_size};
milvus-lite server on loopback. The model is loaded (its export built) before either side is timed.
Load average (1/5/15 min) before: {load_before}; after: {load_after} (2 cores, shared machine).

| measurement | value |
| --- | --- |
| full build, end to end (parse, chunk, embed, write Milvus, 3 asset checks) | {full_s:.1f} s, **{pipeline_rate:.1f} chunks/s** |
| of which embedding (the `embeddings` asset) | {embed_meta["embed_seconds"]:.1f} s |
| raw `EmbeddingModel.encode`, same backend, {len(sample)} of the same chunks, same process | {raw_s:.1f} s, {raw_rate:.1f} chunks/s |
| **pipeline / raw throughput** (target ≥ 0.8) | **{pipeline_rate / raw_rate:.2f}** |
| re-run, nothing changed: chunks embedded | {idle_meta["embedded_chunks"]} |
| re-run, nothing changed: time | {idle_s:.2f} s, **{idle_s / full_s:.1%} of the full build** (target ≤ 5%) |
| re-run after editing one file: chunks embedded | {one_meta["embedded_chunks"]} of {one_meta["total_chunks"]} |
| re-run after editing one file: time | {one_s:.2f} s |
| asset checks after the edit | {checks_line} |
"""
    write_section("Ingestion (Python docs)", body)
    print(body)
