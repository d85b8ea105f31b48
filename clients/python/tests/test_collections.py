"""Collections against a real server: create, upsert, get, search, stats, delete."""

import uuid

import numpy as np
import pytest
from conftest import DIMENSION, FIXTURE_MODEL, FIXTURES

from bindery_client import AlreadyExists, Client, HnswParams, Input, InvalidArgument, Item, NotFound

IMAGE = FIXTURES / "images" / "png_rgb.png"
AUDIO = FIXTURES / "audio" / "cases" / "wav16k_mono_s16_5s.wav"
CLOUD = FIXTURES / "point_cloud" / "cases" / "ascii_color.ply"


def _name() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def test_collection_lifecycle(client: Client) -> None:
    name = _name()
    info = client.collections.create(name, required_keys=["kind"])
    assert (info.name, info.model, info.dimension, info.metric, info.index) == (
        name,
        FIXTURE_MODEL,
        DIMENSION,
        "cosine",
        "exact",
    )
    assert info.required_keys == ["kind"] and info.count == 0
    with pytest.raises(AlreadyExists):
        client.collections.create(name)
    assert name in [c.name for c in client.collections.list()]

    vector = np.random.default_rng(3).standard_normal(DIMENSION).astype(np.float32)
    written = client.collections.upsert(
        name,
        [
            Item("caption", "a red cube", {"kind": "text"}),
            Item("photo", IMAGE, {"kind": "image"}),
            ("sound", AUDIO, {"kind": "audio"}),
            Item("scan", Input.point_cloud(CLOUD), {"kind": "cloud"}),
            Item("raw", vector, {"kind": "vector"}, modality="image"),
        ],
    )
    assert written.upserted == 5 and written.sequence > 0

    got = client.collections.get(name, ["photo", "nope", "raw"], include_vectors=True)
    assert [i.id for i in got.items] == ["photo", "raw"] and got.missing_ids == ["nope"]
    assert got.items[0].modality == "image" and got.items[0].metadata == {"kind": "image"}
    stored_photo = client.embed([IMAGE])[0].vector
    np.testing.assert_allclose(got.items[0].vector, stored_photo, atol=1e-5)
    np.testing.assert_allclose(got.items[1].vector, vector / np.linalg.norm(vector), atol=1e-5)

    # Searching with the stored item's own input finds it first, at cosine 1.
    hits = client.collections.search(name, IMAGE, top_k=3)
    assert hits.exact and hits[0].id == "photo" and hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert len(hits) == 3
    by_vector = client.collections.search(name, vector, top_k=1)
    assert by_vector.ids == ["raw"]
    filtered = client.collections.search(name, "a red cube", top_k=5, modalities=["audio", "point_cloud"])
    assert sorted(filtered.ids) == ["scan", "sound"]
    assert client.collections.search(name, "x", metadata={"kind": "text"}).ids == ["caption"]

    stats = client.collections.stats(name)
    assert stats.collection.count == 5
    assert stats.count_by_modality == {"text": 1, "image": 2, "audio": 1, "point_cloud": 1}
    assert stats.last_sequence == written.sequence and stats.index_ready

    deleted = client.collections.delete_items(name, ["caption", "ghost"])
    assert deleted.deleted == 1 and deleted.missing_ids == ["ghost"] and deleted.sequence > written.sequence
    assert client.collections.stats(name).collection.count == 4

    client.collections.delete(name)
    assert name not in [c.name for c in client.collections.list()]
    with pytest.raises(NotFound):
        client.collections.stats(name)


def test_schema_violations_change_nothing(client: Client) -> None:
    name = _name()
    client.collections.create(name, allowed_keys=["colour"], required_keys=["kind"])
    with pytest.raises(InvalidArgument) as caught:
        client.collections.upsert(
            name, [Item("ok", "fine", {"kind": "t"}), Item("bad", "no kind", {"colour": "red"})]
        )
    assert "bad" in caught.value.message
    assert client.collections.stats(name).collection.count == 0
    client.collections.delete(name)


def test_hnsw_collection(client: Client) -> None:
    name = _name()
    info = client.collections.create(name, metric="l2", index="hnsw", hnsw=HnswParams(m=8, ef_search=32))
    assert info.index == "hnsw" and info.metric == "l2" and info.hnsw.m == 8
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((40, DIMENSION)).astype(np.float32)
    client.collections.upsert(name, [Item(f"v{i}", v) for i, v in enumerate(vectors)])
    hits = client.collections.search(name, vectors[17], top_k=3, exact=True)
    assert hits[0].id == "v17" and hits[0].score == pytest.approx(0.0, abs=1e-4)
    client.collections.delete(name)
