"""The embedder bento as a real `bentoml serve` process on loopback, with the packaged model."""

import base64
import re
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import openai
import pytest

from tests.support.stack import Stack

MODEL = "all-MiniLM-L6-v2"


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{name}\{{[^}}]*\}} ([0-9.e+-]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


@pytest.fixture(scope="module")
def embedder_url(tmp_path_factory):
    with Stack(tmp_path_factory.mktemp("embedder")) as stack:
        yield stack.bento("bentos.embedder.service:Embedder")


def embed(url: str, texts, normalize: bool = True) -> httpx.Response:
    return httpx.post(f"{url}/embed", json={"texts": texts, "normalize": normalize}, timeout=60)


def test_embed_returns_vectors_of_the_model_dimension_normalized_on_request(embedder_url):
    texts = ["how do decorators work", "a list of numbers", "how do decorators work"]
    body = embed(embedder_url, texts).json()
    assert body["model"] == MODEL and body["dim"] == 384
    vectors = np.array(body["embeddings"])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.allclose(vectors[0], vectors[2]) and not np.allclose(vectors[0], vectors[1])
    # The packaged all-MiniLM-L6-v2 ends in a Normalize layer: its raw vectors are unit length already.
    raw = np.array(embed(embedder_url, texts[:2], normalize=False).json()["embeddings"])
    assert raw.shape == (2, 384) and np.allclose(raw, vectors[:2], atol=1e-5)


def test_openai_client_float_and_base64_match_embed(embedder_url):
    client = openai.OpenAI(base_url=f"{embedder_url}/v1", api_key="unused", max_retries=0)
    texts = ["hello world", "context managers close files"]
    expected = np.array(embed(embedder_url, texts).json()["embeddings"])
    as_float = client.embeddings.create(input=texts, model=MODEL, encoding_format="float")
    assert [d.index for d in as_float.data] == [0, 1] and as_float.model == MODEL
    assert np.allclose([d.embedding for d in as_float.data], expected, atol=1e-6)
    # [CLS] hello world [SEP] = 4 tokens; the second text adds its own count.
    assert as_float.usage.prompt_tokens == as_float.usage.total_tokens > 4 + 4
    single = client.embeddings.create(input="hello world", model=MODEL)  # the client asks for base64 by default
    assert single.usage.prompt_tokens == 4
    assert np.allclose(single.data[0].embedding, expected[0], atol=1e-6)
    # base64 on the wire is little-endian float32 bytes, as OpenAI sends it.
    raw = httpx.post(
        f"{embedder_url}/v1/embeddings",
        timeout=30,
        json={"input": "hello world", "model": MODEL, "encoding_format": "base64"},
    ).json()
    decoded = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype="<f4")
    assert decoded.shape == (384,) and np.allclose(decoded, expected[0], atol=1e-6)


def test_sixteen_concurrent_clients_get_no_error_and_their_own_vectors(embedder_url):
    texts = [f"concurrent request {i} about python generators and lists" for i in range(16)]
    reference = np.array(embed(embedder_url, texts).json()["embeddings"])

    def client(i: int):
        results = []
        for _ in range(3):
            response = embed(embedder_url, [texts[i], f"uncached {uuid.uuid4().hex} {i}"])
            results.append((response.status_code, response.json()))
        return results

    with ThreadPoolExecutor(16) as pool:
        results = [r for batch in pool.map(client, range(16)) for r in batch]
    assert [code for code, _ in results] == [200] * 48
    for i, (_, body) in enumerate(results):
        assert np.allclose(body["embeddings"][0], reference[i // 3], atol=1e-5)
    metrics = httpx.get(f"{embedder_url}/metrics", timeout=10).text
    batches = metric(metrics, "bentoml_service_adaptive_batch_size_count")
    requests = metric(metrics, "bentoml_service_adaptive_batch_size_sum")
    assert 0 < batches < requests  # concurrent requests were merged into batches


def test_more_than_a_hundred_concurrent_uncached_requests_all_succeed(embedder_url):
    # BentoML renews its in-process client's session every 100 calls and closes the old one under
    # the calls still on it: the bento must repeat those, not answer 500.
    def client(i: int) -> list[int]:
        return [embed(embedder_url, [f"renewal probe {uuid.uuid4().hex} {i} {j}"]).status_code for j in range(8)]

    with ThreadPoolExecutor(16) as pool:
        codes = [code for batch in pool.map(client, range(16)) for code in batch]
    assert codes == [200] * 128


@pytest.mark.parametrize(
    "payload,status,needle",
    [
        ({"texts": []}, 400, "texts"),
        ({"texts": ["x"] * 10_000}, 413, "texts: 10000 texts exceed max_texts_per_request=256"),
        ({"texts": [1, 2]}, 400, "texts"),
        ({"texts": "not a list"}, 400, "texts"),
        ({"texts": ["ok"], "normalize": "maybe"}, 400, "normalize"),
        ({"texts": ["ok", "y" * 9000]}, 413, "texts[1]: 9000 characters exceed max_chars_per_text=8192"),
        ({}, 400, "texts"),
    ],
)
def test_bad_embed_inputs_are_4xx_naming_the_field(embedder_url, payload, status, needle):
    response = httpx.post(f"{embedder_url}/embed", json=payload, timeout=30)
    assert response.status_code == status
    error = response.json()["error"]  # OpenAI's shape, like every error of every bento
    assert needle in error["message"] and needle.startswith(error["param"])
    assert error["message"].startswith(error["param"])


@pytest.mark.parametrize(
    "payload,status,param",
    [
        ({"input": [], "model": MODEL}, 400, "input"),
        ({"input": [1, 2], "model": MODEL}, 400, "input"),
        ({"input": ["x"] * 10_000, "model": MODEL}, 413, "input"),
        ({"input": "z" * 9000, "model": MODEL}, 413, "input"),
        ({"input": "ok", "model": "text-embedding-3-small"}, 404, "model"),
        ({"input": "ok", "model": MODEL, "encoding_format": "int8"}, 400, "encoding_format"),
        ({"model": MODEL}, 400, "input"),
    ],
)
def test_bad_openai_inputs_are_4xx_in_openai_error_form(embedder_url, payload, status, param):
    response = httpx.post(f"{embedder_url}/v1/embeddings", json=payload, timeout=30)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["param"] == param and param in error["message"]


def test_openai_client_raises_a_clear_error_for_too_much_input(embedder_url):
    client = openai.OpenAI(base_url=f"{embedder_url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.APIStatusError) as caught:
        client.embeddings.create(input=["x"] * 300, model=MODEL)
    assert caught.value.status_code == 413 and "max_texts_per_request" in str(caught.value)


def test_the_batching_api_is_bounded_too(embedder_url):
    response = httpx.post(f"{embedder_url}/encode_batch", json={"texts": ["q" * 9000]}, timeout=30)
    assert response.status_code == 400 and response.json()["error"]["param"] == "texts"


def test_cache_counts_a_hit_on_a_repeat(embedder_url):
    def counters():
        text = httpx.get(f"{embedder_url}/metrics", timeout=10).text
        return (metric(text, "ragyard_embedder_cache_hits_total"), metric(text, "ragyard_embedder_cache_misses_total"))

    text = f"cache probe {uuid.uuid4().hex}"
    hits0, misses0 = counters()
    first = embed(embedder_url, [text]).json()["embeddings"]
    hits1, misses1 = counters()
    second = embed(embedder_url, [text]).json()["embeddings"]
    hits2, misses2 = counters()
    assert (hits1 - hits0, misses1 - misses0) == (0, 1)
    assert (hits2 - hits1, misses2 - misses1) == (1, 0)
    assert first == second
    # normalize is part of the key: the unnormalized vector is a separate entry.
    embed(embedder_url, [text], normalize=False)
    assert counters()[1] - misses2 == 1


def test_probes_and_openapi_document(embedder_url):
    assert httpx.get(f"{embedder_url}/healthz", timeout=10).status_code == 200
    assert httpx.get(f"{embedder_url}/readyz", timeout=10).status_code == 200
    paths = httpx.get(f"{embedder_url}/docs.json", timeout=10).json()["paths"]
    assert {"/embed", "/v1/embeddings"} <= set(paths)


def test_ingestion_embeds_through_the_bento_when_configured(embedder_url, settings, corpus):
    from pipelines.materialize import check_outcomes
    from ragyard import collection as col
    from ragyard.embedding import EmbeddingModel
    from tests.support.corpus import write_corpus
    from tests.support.ingest import index_metadata, run_ingest

    write_corpus(corpus, count=2)
    settings.ingest.use_embedder_bento = True
    settings.embedder.url = embedder_url
    settings.embedder.max_texts_per_request = 8  # the client splits the chunks into several requests,
    settings.ingest.embed_concurrency = 3  # three in flight at once: the vectors must still match their chunks
    result = run_ingest(settings)
    meta = index_metadata(result)
    assert meta["embedded_chunks"] == meta["total_chunks"] > 8
    assert all(check_outcomes(result).values())
    rows = col.connect(settings.milvus.uri).query(
        settings.milvus.collection, filter="", output_fields=[col.TEXT, col.DENSE], limit=5
    )
    local = EmbeddingModel.from_settings(settings).encode([r[col.TEXT] for r in rows])  # the bento's backend
    assert np.allclose(local, np.asarray([r[col.DENSE] for r in rows]), atol=1e-4)


@pytest.mark.parametrize("path", ["/embed", "/v1/embeddings"])
def test_a_body_that_is_not_json_is_a_4xx(embedder_url, path):
    response = httpx.post(
        f"{embedder_url}{path}", content=b"{not json", timeout=30, headers={"content-type": "application/json"}
    )
    assert 400 <= response.status_code < 500, response.text
