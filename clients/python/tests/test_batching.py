"""Calls larger than the server's limits are split into several requests, in order."""

import numpy as np
import pytest
from conftest import DIMENSION, FIXTURES

from bindery_client import BinderyError, Client, Item

MAX_ITEMS = 4
MAX_MESSAGE_BYTES = 256 * 1024
IMAGES = sorted((FIXTURES / "images").glob("png_*.png"))


@pytest.fixture(scope="module")
def small_server(start_server):
    """A server accepting at most 4 entries and 256 KiB per request."""
    server = start_server(["--max-items", str(MAX_ITEMS), "--max-message-bytes", str(MAX_MESSAGE_BYTES)])
    with Client(server.address) as client:
        server.wait_serving(client)
    return server


def _limited(server, **limits) -> Client:
    return Client(server.address, timeout=60, max_items=limits.pop("max_items", MAX_ITEMS), **limits)


def test_the_limits_are_real_without_batching(small_server) -> None:
    texts = [f"text {i}" for i in range(MAX_ITEMS + 1)]
    with Client(small_server.address, max_items=1000) as unbatched:
        with pytest.raises(BinderyError) as caught:
            unbatched.embed(texts)
        assert caught.value.code_name == "INVALID_ARGUMENT"
        assert str(MAX_ITEMS) in caught.value.message


def test_embed_splits_by_count_and_keeps_order(small_server, client: Client) -> None:
    texts = [f"item number {i}" for i in range(11)]
    with _limited(small_server) as limited:
        result = limited.embed(texts)
    assert result.ids == [f"#{i}" for i in range(11)]
    np.testing.assert_allclose(result.matrix(), client.embed(texts).matrix(), atol=1e-5)


def test_embed_splits_by_size(small_server) -> None:
    # Largest first: the first four together exceed the server's message limit.
    images = sorted(IMAGES, key=lambda p: -p.stat().st_size)
    assert sum(p.stat().st_size for p in images[:MAX_ITEMS]) > MAX_MESSAGE_BYTES, "fixtures too small"
    with _limited(small_server, max_request_bytes=200 * 1024) as limited:
        result = limited.embed(images)
    assert result.ids == [str(p) for p in images]
    assert all(e.modality == "image" for e in result)
    with pytest.raises(BinderyError) as caught, _limited(small_server) as count_only:
        count_only.embed(images)
    # tonic refuses an oversized message with OUT_OF_RANGE.
    assert caught.value.code_name == "OUT_OF_RANGE", caught.value


def test_classify_splits_inputs(small_server, client: Client) -> None:
    inputs = [f"thing {i}" for i in range(9)]
    labels = ["cat", "dog", "cube"]
    with _limited(small_server) as limited:
        result = limited.classify(inputs, labels, top_k=0)
    assert [c.id for c in result] == [f"#{i}" for i in range(9)]
    np.testing.assert_allclose(
        result.probabilities(), client.classify(inputs, labels).probabilities(), atol=1e-5
    )


@pytest.mark.parametrize("rows, cols", [(6, 1), (1, 6), (5, 7)])
def test_similarity_splits_into_a_grid(small_server, client: Client, rows: int, cols: int) -> None:
    queries = [f"query {i}" for i in range(rows)]
    rng = np.random.default_rng(rows * 10 + cols)
    candidates = list(rng.standard_normal((cols, DIMENSION)).astype(np.float32))
    with _limited(small_server) as limited:
        split = limited.similarity(queries, candidates, softmax=True)
    whole = client.similarity(queries, candidates, softmax=True)
    np.testing.assert_allclose(split.cosine, whole.cosine, atol=1e-5)
    np.testing.assert_allclose(split.logits, whole.logits, atol=1e-4)
    np.testing.assert_allclose(split.probabilities, whole.probabilities, atol=1e-5)


def test_collection_writes_and_reads_split(small_server) -> None:
    vectors = np.random.default_rng(11).standard_normal((10, DIMENSION)).astype(np.float32)
    ids = [f"item-{i}" for i in range(10)]
    with _limited(small_server) as limited:
        limited.collections.create("batched")
        written = limited.collections.upsert(
            "batched", [Item(i, v, {"n": i[-1]}) for i, v in zip(ids, vectors, strict=True)]
        )
        assert written.upserted == 10
        got = limited.collections.get("batched", ids + ["missing"])
        assert [i.id for i in got.items] == ids and got.missing_ids == ["missing"]
        assert limited.collections.delete_items("batched", ids[:7]).deleted == 7
        assert limited.collections.stats("batched").collection.count == 3
        limited.collections.delete("batched")
