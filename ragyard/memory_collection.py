"""The Milvus collection of long-term memories: the one place that defines its schema and how to open it.

One row per memory: its pseudonymized text (BM25 sparse vector computed by Milvus from it), its dense
vector, whose it is (`scope`, the partition key, and `user_id`) and when it expires. The memory bento
writes and searches it; the state database holds the same memories' metadata (bentos/memory/rows.py).
"""

from __future__ import annotations

from pymilvus import DataType, Function, FunctionType, MilvusClient

from ragyard.collection import DENSE, SPARSE, literal
from ragyard.collection import ensure_collection as ensure_collection_of

# Field names; DENSE and SPARSE are the chunk collection's, so its index helpers apply here too.
ID = "id"
SCOPE = "scope"
USER = "user_id"
TEXT = "text"
EXPIRES_AT = "expires_at"

# VARCHAR limits, in bytes of UTF-8 (Milvus refuses a longer value and fails the whole write).
ID_MAX_BYTES = 64
SCOPE_MAX_CHARS = 128  # the scope pattern allows ASCII only: characters are bytes
USER_MAX_CHARS = 256  # as the router's `user` field
USER_MAX_BYTES = 4 * USER_MAX_CHARS
# A memory's text after pseudonymization: placeholders (<PERSON_3f2a9c1b>) are longer than most
# values they stand for, so the stored text has room beyond the request's character bound.
TEXT_MAX_BYTES = 8192
# Never expires: a time beyond any `now`, so that "expires_at > now" needs no special case.
NEVER = 2**62

OUTPUT_FIELDS = [ID, TEXT, EXPIRES_AT]


def build_schema(dim: int):
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field(ID, DataType.VARCHAR, is_primary=True, max_length=ID_MAX_BYTES)
    # Partition key: a scope's memories sit together, and every search names one scope.
    schema.add_field(SCOPE, DataType.VARCHAR, max_length=SCOPE_MAX_CHARS, is_partition_key=True)
    schema.add_field(USER, DataType.VARCHAR, max_length=USER_MAX_BYTES)
    schema.add_field(TEXT, DataType.VARCHAR, max_length=TEXT_MAX_BYTES, enable_analyzer=True)
    schema.add_field(EXPIRES_AT, DataType.INT64)
    schema.add_field(DENSE, DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field(SPARSE, DataType.SPARSE_FLOAT_VECTOR)
    schema.add_function(
        Function(
            name="memory_bm25", function_type=FunctionType.BM25, input_field_names=[TEXT], output_field_names=[SPARSE]
        )
    )
    return schema


def ensure_collection(client: MilvusClient, name: str, dim: int) -> bool:
    """Create the collection if it is missing, check its dimension, load it. True if created.

    Strong consistency: a search right after a write (the duplicate check of the next add, a search
    after a delete) sees it."""
    return ensure_collection_of(client, name, dim, schema=build_schema(dim), consistency_level="Strong")


def owner_filter(scope: str, user: str) -> str:
    """Every row of one user in one scope: what a delete of the user removes."""
    return f"{SCOPE} == {literal(scope)} and {USER} == {literal(user)}"


def live_filter(scope: str, user: str, now: float) -> str:
    """The user's memories that have not expired at `now`: what searches see."""
    return f"{owner_filter(scope, user)} and {EXPIRES_AT} > {int(now)}"


def expired_filter(now: float) -> str:
    return f"{EXPIRES_AT} <= {int(now)}"
