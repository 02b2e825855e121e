"""The retriever bento as real `bentoml serve` processes: a real embedder bento, real milvus-lite, a real index."""

import uuid

import httpx
import numpy as np
import pytest

from bentos.retriever.filters import filter_expression
from pipelines.ledger import Ledger
from ragyard import collection as col
from ragyard.settings import (
    EmbedderSettings,
    settings_env,
)
from tests.support.ingest import indexed_corpus
from tests.support.network import free_port
from tests.support.stack import Stack

INJECTION = 'x" or doc_id != "'


def build_tiny_cross_encoder(folder) -> str:
    """A random-weight one-layer BERT cross-encoder with the packaged MiniLM tokenizer: no download."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from ragyard.embedding import resolve_model_path

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("all-MiniLM-L6-v2"))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    config.num_labels = 1  # one relevance score
    BertForSequenceClassification(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, milvus_uri):
    """An index of the test corpus, one embedder, and three retrievers:
    `plain` (RRF, no reranker), `rerank` (weighted fusion, tiny cross-encoder), and `missing`
    (a collection that does not exist yet, an embedder that is down)."""
    root = tmp_path_factory.mktemp("retriever")
    settings = indexed_corpus(root, milvus_uri)
    settings.embedder = EmbedderSettings(port=free_port())
    reranker = build_tiny_cross_encoder(root / "tiny-cross-encoder")
    base_env = {**settings_env(settings), "BENTOML_HOME": str(root / "bentoml")}
    variants = {
        "plain": {},
        "rerank": {
            "RAGYARD_RETRIEVER__RERANKER_MODEL": reranker,
            "RAGYARD_RETRIEVER__FUSION": "weighted",
            "RAGYARD_RETRIEVER__DENSE_WEIGHT": "0.6",
        },
        "missing": {
            "RAGYARD_MILVUS__COLLECTION": f"t_missing_{uuid.uuid4().hex[:8]}",
            "RAGYARD_EMBEDDER__URL": f"http://127.0.0.1:{free_port()}",
        },
    }
    with Stack(root) as stack:
        embedder = stack.bento_spec("bentos.embedder.service:Embedder", port=settings.embedder.port, env=base_env)
        # `missing` is alive but never ready: its collection does not exist yet.
        retrievers = {
            name: stack.bento_spec(
                "bentos.retriever.service:Retriever",
                name=f"retriever-{name}",
                env={**base_env, **extra},
                health_path="/healthz" if name == "missing" else "/readyz",
            )
            for name, extra in variants.items()
        }
        stack.start(embedder, *retrievers.values())
        urls = {name: spec.ui_url for name, spec in retrievers.items()}
        yield {
            "settings": settings,
            "reranker": reranker,
            "missing_collection": variants["missing"]["RAGYARD_MILVUS__COLLECTION"],
            **urls,
        }


def search(url: str, **body) -> httpx.Response:
    return httpx.post(f"{url}/search", json=body, timeout=60)


@pytest.mark.parametrize(
    "mode,query,doc_id",
    [
        ("dense", "how do decorators work in python", "docs:guide/decorators.rst"),
        ("bm25", "generators revision", "docs:reference/generators.rst"),
        ("hybrid", "how do context managers work", "docs:reference/context_managers.rst"),
    ],
)
def test_each_mode_finds_the_right_document(stack, mode, query, doc_id):
    response = search(stack["plain"], query=query, mode=mode, top_k=3)
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["hits"]) == 3
    top = body["hits"][0]
    assert top["doc_id"] == doc_id and top["source"] == "docs" and top["chunk_id"].startswith(doc_id + "#")
    assert top["text"] and top["title"]
    scores = [h["score"] for h in body["hits"]]
    assert scores == sorted(scores, reverse=True)
    timings = body["timings"]
    assert timings["total_ms"] >= timings["search_ms"] > 0 and timings["rerank_ms"] == 0
    assert (timings["embed_ms"] > 0) == (mode != "bm25")


def test_weighted_fusion_finds_the_right_document(stack):
    response = search(stack["rerank"], query="how do decorators work in python", mode="hybrid", top_k=3)
    assert response.status_code == 200, response.text
    assert response.json()["hits"][0]["doc_id"] == "docs:guide/decorators.rst"


def test_filter_by_doc_id_and_source(stack):
    one = search(stack["plain"], query="python", mode="bm25", top_k=10, filter={"doc_id": "docs:reference/lists.rst"})
    assert one.status_code == 200 and one.json()["hits"]
    assert {h["doc_id"] for h in one.json()["hits"]} == {"docs:reference/lists.rst"}
    two_docs = ["docs:reference/lists.rst", "docs:guide/decorators.rst"]
    both = search(stack["plain"], query="python objects", mode="hybrid", top_k=20, filter={"doc_id": two_docs})
    assert {h["doc_id"] for h in both.json()["hits"]} == set(two_docs)
    by_source = search(stack["plain"], query="python", mode="dense", top_k=5, filter={"source": "docs"})
    assert len(by_source.json()["hits"]) == 5
    other = search(stack["plain"], query="python", mode="dense", top_k=5, filter={"source": "elsewhere"})
    assert other.status_code == 200 and other.json()["hits"] == []


def test_injection_looking_filter_values_match_nothing_and_error_nothing(stack):
    for mode in ("dense", "bm25", "hybrid"):
        for value in (INJECTION, [INJECTION], 'a\\" || 1 == 1 || doc_id == "'):
            response = search(stack["plain"], query="python", mode=mode, filter={"doc_id": value})
            assert response.status_code == 200, response.text
            assert response.json()["hits"] == []
    assert filter_expression({"doc_id": INJECTION}) == '(doc_id == "x\\" or doc_id != \\"")'


@pytest.mark.parametrize(
    "body,status,needle",
    [
        ({"query": "x", "filter": {"text": "x"}}, 400, "filter.text: unknown field"),
        ({"query": "x", "filter": {"content_hash": "x"}}, 400, "filter.content_hash"),
        ({"query": "x", "filter": {"doc_id": []}}, 400, "filter.doc_id"),
        ({"query": "x", "filter": {"doc_id": 5}}, 400, "filter.doc_id"),
        ({"query": "x", "top_k": 101}, 400, "top_k: 101 exceeds max_top_k=100"),
        ({"query": "x", "top_k": 0}, 400, "top_k"),
        ({"query": "x", "mode": "fuzzy"}, 400, "mode"),
        ({"query": ""}, 400, "query"),
        ({"query": "q" * 9000}, 413, "query: 9000 characters"),
        ({"query": "x", "rerank": True}, 400, "rerank: no reranker is configured"),
    ],
)
def test_bad_requests_are_4xx_naming_the_problem(stack, body, status, needle):
    response = httpx.post(f"{stack['plain']}/search", json=body, timeout=30)
    assert response.status_code == status
    error = response.json()["error"]  # OpenAI's shape, like every error of every bento
    assert error["message"].startswith(needle) and needle.startswith(error["param"])


def test_rerank_rescores_and_reorders_with_the_cross_encoder(stack):
    from sentence_transformers import CrossEncoder

    query = "how do generators work"
    plain = search(stack["rerank"], query=query, mode="hybrid", top_k=5).json()
    reranked = search(stack["rerank"], query=query, mode="hybrid", top_k=5, rerank=True).json()
    assert reranked["timings"]["rerank_ms"] > 0
    hits = reranked["hits"]
    assert len(hits) == 5
    expected = CrossEncoder(stack["reranker"], device="cpu").predict(
        [(query, h["text"]) for h in hits], show_progress_bar=False
    )
    assert np.allclose([h["score"] for h in hits], expected, atol=1e-4)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    # The fused scores are RRF/weighted values in [0, 1]; the cross-encoder's logits are not those.
    assert [h["score"] for h in hits] != [h["score"] for h in plain["hits"]]


def test_the_index_it_searches_has_the_ingestion_s_content_version(stack):
    settings = stack["settings"]
    response = httpx.get(f"{stack['plain']}/index", timeout=30)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "collection": settings.milvus.collection,
        "content_version": Ledger(settings.ledger_path).content_version(),
        "rows": Ledger(settings.ledger_path).chunk_total(),
    }


def test_missing_then_empty_collection_answer_503_with_a_message(stack):
    url = stack["missing"]
    assert httpx.get(f"{url}/readyz", timeout=10).status_code == 503
    response = search(url, query="python", mode="bm25")
    assert response.status_code == 503
    assert "does not exist" in response.json()["error"]["message"] and stack["missing_collection"] in response.text
    index = httpx.get(f"{url}/index", timeout=30)
    assert index.status_code == 503 and "does not exist" in index.json()["error"]["message"]
    # An empty collection: ready, but every search says it is empty.
    settings = stack["settings"]
    client = col.connect(settings.milvus.uri)
    col.ensure_collection(client, stack["missing_collection"], settings.embedder.dim)
    try:
        assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200
        assert httpx.get(f"{url}/index", timeout=30).json() == {
            "collection": stack["missing_collection"],
            "content_version": None,
            "rows": 0,
        }  # never versioned
        empty = search(url, query="python", mode="bm25")
        assert empty.status_code == 503 and "is empty" in empty.json()["error"]["message"]
        # Its embedder is down: dense search answers 503 naming the embedder, after retries.
        down = search(url, query="python", mode="dense")
        assert down.status_code == 503 and "embedder at" in down.json()["error"]["message"]
    finally:
        client.drop_collection(stack["missing_collection"])


def test_a_body_that_is_not_json_is_a_4xx(stack):
    response = httpx.post(
        f"{stack['plain']}/search", content=b"{not json", timeout=30, headers={"content-type": "application/json"}
    )
    assert 400 <= response.status_code < 500, response.text
