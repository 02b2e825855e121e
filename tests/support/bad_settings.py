"""Settings that fail to parse: one bad value per group."""

# One bad value per group, in a field that is not part of a bento's endpoint (port, URL).
BAD = {
    "milvus": ("RAGYARD_MILVUS__COLLECTION", "no spaces allowed"),
    "embedder": ("RAGYARD_EMBEDDER__BATCH_SIZE", "0"),
    "retriever": ("RAGYARD_RETRIEVER__RRF_K", "0"),
    "llm": ("RAGYARD_LLM__MODELS", "[{}]"),
    "safety": ("RAGYARD_SAFETY__POLICIES", "{}"),
    "router": ("RAGYARD_ROUTER__TOP_K", "0"),
    "tools": ("RAGYARD_TOOLS__MCP_SERVERS", '[{"name": "both-or-neither"}]'),
    "memory": ("RAGYARD_MEMORY__UPDATE_SIMILARITY", "2"),
    "review": ("RAGYARD_REVIEW__SAFETY_POLICY", "no spaces allowed"),
    "langfuse": ("RAGYARD_LANGFUSE", "not json"),
    "chunker": ("RAGYARD_CHUNKER__MAX_CHARS", "1"),
    "prompts": ("RAGYARD_PROMPTS__AB_WEIGHTS", '{"production": -1}'),
    "evals": ("RAGYARD_EVALS__GATE_MODE", "sideways"),
    "ingest": ("RAGYARD_INGEST__SOURCES", "not json"),
    "mlflow": ("RAGYARD_MLFLOW__RUN_LOCAL", "perhaps"),
    "dagster": ("RAGYARD_DAGSTER__PORT", "x"),
    "supervisor": ("RAGYARD_SUPERVISOR__MAX_CRASHES", "0"),
    "broker": ("RAGYARD_BROKER__URL", "http://not-amqp"),
}
