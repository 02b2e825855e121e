"""The tools bento's knowledge-base search against a real retriever bento over a real index (milvus-lite,
the test corpus ingested), BM25 so that no embedder bento is needed at search time."""

from __future__ import annotations

import httpx
import pytest

from ragyard.settings import settings_env
from router.keys import KeyStore
from router.state import database
from tests.support.ingest import indexed_corpus
from tests.support.network import free_port
from tests.support.stack import Stack


@pytest.fixture(scope="module")
def tools(tmp_path_factory, milvus_uri):
    """The tools bento's URL and a key, over a retriever of the ingested test corpus."""
    root = tmp_path_factory.mktemp("tools-kb")
    settings = indexed_corpus(root, milvus_uri)
    store = KeyStore(database(settings, "keys"))
    _, key = store.create("kb")
    store.close()
    retriever_port = free_port()
    env = {
        **settings_env(settings),
        "BENTOML_HOME": str(root / "bentoml"),
        "RAGYARD_RETRIEVER__URL": f"http://127.0.0.1:{retriever_port}",
        "RAGYARD_TOOLS__KB_MODE": "bm25",
        "RAGYARD_TOOLS__KB_MAX_CHARS_PER_HIT": "120",
    }
    with Stack(root) as stack:
        stack.start(stack.bento_spec("bentos.retriever.service:Retriever", env=env, port=retriever_port))
        yield stack.bento("bentos.tools.service:Tools", env=env), key


def search(tools, **arguments) -> httpx.Response:
    url, key = tools
    return httpx.post(
        f"{url}/v1/tools/knowledge_search",
        json={"arguments": arguments},
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )


def test_knowledge_search_finds_the_document_with_bounded_passages(tools):
    response = search(tools, query="generators revision", top_k=3)
    assert response.status_code == 200, response.text
    hits = response.json()["result"]["hits"]
    assert len(hits) == 3 and hits[0]["doc_id"] == "docs:reference/generators.rst"
    assert hits[0]["source"] == "docs" and hits[0]["title"] and hits[0]["chunk_id"].startswith(hits[0]["doc_id"])
    assert all(len(hit["text"]) <= 123 for hit in hits) and any(hit["text"].endswith("...") for hit in hits)


def test_knowledge_search_passes_filters_to_the_retriever(tools):
    one = search(tools, query="python", top_k=10, filter={"doc_id": "docs:reference/lists.rst"})
    assert {hit["doc_id"] for hit in one.json()["result"]["hits"]} == {"docs:reference/lists.rst"}
    two = ["docs:reference/lists.rst", "docs:guide/decorators.rst"]
    both = search(tools, query="python objects", top_k=10, filter={"doc_id": two})
    assert {hit["doc_id"] for hit in both.json()["result"]["hits"]} == set(two)
