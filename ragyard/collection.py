"""The Milvus collection of chunks: the one place that defines its schema and how to open it.

Ingestion writes it, the retriever searches it, checks and evals read it.
"""

from __future__ import annotations

import hashlib
import json

from pymilvus import DataType, Function, FunctionType, MilvusClient

# Field names, used by every reader and writer of the collection.
CHUNK_ID = "chunk_id"
DOC_ID = "doc_id"
SOURCE = "source"
PATH = "path"
TITLE = "title"
SECTION = "section"
POSITION = "position"
TEXT = "text"
CONTENT_HASH = "content_hash"
DENSE = "dense"
SPARSE = "sparse"

# Fields a search may filter on and return; the vectors are never returned to clients.
METADATA_FIELDS = (CHUNK_ID, DOC_ID, SOURCE, PATH, TITLE, SECTION, POSITION, CONTENT_HASH)

# VARCHAR limits, in bytes of UTF-8 (Milvus refuses a longer value and fails the whole insert).
ID_MAX_BYTES = 1024
TEXT_MAX_BYTES = 16384
LABEL_MAX_BYTES = 1024
VARCHAR_MAX_BYTES = {
    CHUNK_ID: ID_MAX_BYTES,
    DOC_ID: ID_MAX_BYTES,
    SOURCE: 128,
    PATH: LABEL_MAX_BYTES,
    TITLE: LABEL_MAX_BYTES,
    SECTION: LABEL_MAX_BYTES,
    TEXT: TEXT_MAX_BYTES,
    CONTENT_HASH: 64,  # a SHA-256 in hex
}
# Labels are shown to readers: a value too long is cut (fit_label). Ids are made to fit by their
# maker (fit_id), and the chunker keeps texts within TEXT_MAX_BYTES.
LABEL_FIELDS = (SOURCE, PATH, TITLE, SECTION)
# A chunk id is its document id, "#" and its position (an INT32: at most 10 digits).
CHUNK_SUFFIX_MAX_BYTES = 1 + 10
DOC_ID_MAX_BYTES = ID_MAX_BYTES - CHUNK_SUFFIX_MAX_BYTES
_CUT_MARK = "…"
_ID_DIGEST_CHARS = 32


def _cut_to_bytes(value: str, max_bytes: int) -> str:
    """`value`'s longest prefix that is at most `max_bytes` of UTF-8, cut at a character boundary."""
    return value.encode()[:max_bytes].decode(errors="ignore")


def fit_label(value: str, max_bytes: int) -> str:
    """`value` if it fits in `max_bytes` of UTF-8, else its beginning and "…" within them."""
    if len(value.encode()) <= max_bytes:
        return value
    return _cut_to_bytes(value, max_bytes - len(_CUT_MARK.encode())) + _CUT_MARK


def fit_id(value: str, max_bytes: int) -> str:
    """`value` if it fits in `max_bytes` of UTF-8, else a readable beginning of it, "~" and a hash
    of the whole: stable (the same value always gives the same id) and distinct per value."""
    if len(value.encode()) <= max_bytes:
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:_ID_DIGEST_CHARS]
    return f"{_cut_to_bytes(value, max_bytes - 1 - len(digest))}~{digest}"


def fit_labels(row: dict) -> dict:
    """The row with every label field cut to its field's limit."""
    return {**row, **{f: fit_label(row[f], VARCHAR_MAX_BYTES[f]) for f in LABEL_FIELDS if f in row}}


DENSE_METRIC = "COSINE"
# Build parameters per dense index type (settings `milvus.dense_index`, `milvus.dense_index_params`).
# IVF's nlist suits about 100k to 1M chunks (4·sqrt(rows)); IVF_PQ's m must divide the dimension.
DENSE_BUILD_PARAMS: dict[str, dict] = {
    "HNSW": {"M": 16, "efConstruction": 200},
    "HNSW_SQ": {"M": 16, "efConstruction": 200, "sq_type": "SQ8"},
    "IVF_FLAT": {"nlist": 1024},
    "IVF_SQ8": {"nlist": 1024},
    "IVF_PQ": {"nlist": 1024, "m": 48, "nbits": 8},
    "DISKANN": {},
}
SPARSE_INDEX = {"index_type": "SPARSE_INVERTED_INDEX", "metric_type": "BM25", "params": {}}


def dense_index(index_type: str = "HNSW", overrides: dict | None = None) -> dict:
    """`add_index` keyword arguments for the dense vector."""
    return {
        "index_type": index_type,
        "metric_type": DENSE_METRIC,
        "params": {**DENSE_BUILD_PARAMS[index_type], **(overrides or {})},
    }


def dense_search_params(index_type: str, limit: int, overrides: dict | None = None) -> dict:
    """Search parameters for `limit` results on a dense index of `index_type`: HNSW's ef and
    DiskANN's search_list are raised to at least `limit` (Milvus refuses less)."""
    if index_type.startswith("IVF"):
        params = {"nprobe": 32, **(overrides or {})}
    else:
        knob = "search_list" if index_type == "DISKANN" else "ef"
        params = {knob: 64, **(overrides or {})}
        params[knob] = max(int(params[knob]), limit)
    return {"metric_type": DENSE_METRIC, "params": params}


def dense_index_type(client: MilvusClient, name: str) -> str:
    """The index the collection's dense vector was built with."""
    return client.describe_index(name, DENSE)["index_type"]


# A collection property: the ingestion ledger's content version of what the collection holds,
# written after every ingest run, read by the router so that a cached answer dies with its index.
CONTENT_VERSION = "ragyard.content_version"


def set_content_version(client: MilvusClient, name: str, version: str) -> None:
    client.alter_collection_properties(name, properties={CONTENT_VERSION: version})


def content_version(client: MilvusClient, name: str) -> str | None:
    """The content version last written by the ingestion; None for a collection it never wrote."""
    return client.describe_collection(name).get("properties", {}).get(CONTENT_VERSION)


class CollectionMismatch(RuntimeError):
    """The collection exists but was built for another embedding dimension."""


def build_schema(dim: int):
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    limit = VARCHAR_MAX_BYTES
    schema.add_field(CHUNK_ID, DataType.VARCHAR, is_primary=True, max_length=limit[CHUNK_ID])
    schema.add_field(DOC_ID, DataType.VARCHAR, max_length=limit[DOC_ID])
    schema.add_field(SOURCE, DataType.VARCHAR, max_length=limit[SOURCE])
    schema.add_field(PATH, DataType.VARCHAR, max_length=limit[PATH])
    schema.add_field(TITLE, DataType.VARCHAR, max_length=limit[TITLE])
    schema.add_field(SECTION, DataType.VARCHAR, max_length=limit[SECTION])
    schema.add_field(POSITION, DataType.INT32)
    schema.add_field(TEXT, DataType.VARCHAR, max_length=limit[TEXT], enable_analyzer=True)
    schema.add_field(CONTENT_HASH, DataType.VARCHAR, max_length=limit[CONTENT_HASH])
    schema.add_field(DENSE, DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field(SPARSE, DataType.SPARSE_FLOAT_VECTOR)
    # Milvus computes the BM25 sparse vector from `text` on insert and from the query on search.
    schema.add_function(
        Function(
            name="text_bm25",
            function_type=FunctionType.BM25,
            input_field_names=[TEXT],
            output_field_names=[SPARSE],
        )
    )
    return schema


# pymilvus pings every 10 s even on an idle channel; gRPC servers with default settings, as
# milvus-lite's is, answer the third such ping with GOAWAY "too_many_pings" and the client's
# reconnect can fail. Ping only during calls, and no more often than servers accept (5 min).
_GRPC_OPTIONS = {"grpc.keepalive_time_ms": 360_000, "grpc.keepalive_permit_without_calls": False}


def connect(uri: str, token: str = "", timeout_s: float = 30.0) -> MilvusClient:
    return MilvusClient(uri=uri, token=token, timeout=timeout_s, grpc_options=_GRPC_OPTIONS)


def collection_dim(client: MilvusClient, name: str) -> int:
    for field in client.describe_collection(name)["fields"]:
        if field["name"] == DENSE:
            return int(field["params"]["dim"])
    raise CollectionMismatch(f"collection {name!r} has no {DENSE!r} field: not a ragyard collection")


def ensure_collection(
    client: MilvusClient, name: str, dim: int, index: dict | None = None, schema=None, **options: str
) -> bool:
    """Create the collection if it is missing (its dense vector indexed by `index`, a `dense_index`;
    HNSW by default; `schema` another collection's with the same DENSE and SPARSE fields, `options` for
    `create_collection`), check its dimension, load it. True if created."""
    created = False
    if not client.has_collection(name):
        index_params = client.prepare_index_params()
        index_params.add_index(DENSE, **(index or dense_index()))
        index_params.add_index(SPARSE, **SPARSE_INDEX)
        client.create_collection(
            name, schema=schema if schema is not None else build_schema(dim), index_params=index_params, **options
        )
        created = True
    existing = collection_dim(client, name)
    if existing != dim:
        raise CollectionMismatch(
            f"collection {name!r} holds {existing}-dim vectors but the embedder makes {dim}-dim ones; "
            "use another collection name or drop it to re-index"
        )
    client.load_collection(name)
    return created


def row_count(client: MilvusClient, name: str) -> int:
    rows = client.query(name, filter="", output_fields=["count(*)"])
    return int(rows[0]["count(*)"])


def literal(value: str | int | float) -> str:
    """A Milvus expression literal for a value: strings quoted and escaped, never pasted raw.

    milvus-lite does not support filter templates (`filter_params`), so values are quoted here;
    a JSON string literal is a valid Milvus string literal with the same escapes.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    raise TypeError(f"unsupported filter value type {type(value).__name__}")


def in_list(field: str, values) -> str:
    return f"{field} in [{', '.join(literal(v) for v in values)}]"
