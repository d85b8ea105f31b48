"""AsyncClient against a real server."""

import asyncio
import uuid

import numpy as np
import pytest
from conftest import DIMENSION, FIXTURES

from bindery_client import AsyncClient, Client, Input, InvalidArgument, Item

IMAGE = FIXTURES / "images" / "png_rgb.png"


def test_async_client_matches_the_blocking_one(server, client: Client) -> None:
    inputs = ["a red cube", IMAGE, Input.file(FIXTURES / "thermal" / "gray8_640x512.png", modality="thermal")]

    async def run():
        async with AsyncClient(server.address, timeout=60, max_items=2) as aclient:
            await aclient.wait_ready()
            models = await aclient.list_models()
            # Concurrent calls on one channel.
            embedded, similarity, classified = await asyncio.gather(
                aclient.embed(inputs),
                aclient.similarity(["a red cube"], [IMAGE], softmax=True),
                aclient.classify([IMAGE], ["cat", "cube"]),
            )
            return models, embedded, similarity, classified

    models, embedded, similarity, classified = asyncio.run(run())
    assert models[0].dimension == DIMENSION
    assert [e.modality for e in embedded] == ["text", "image", "thermal"]
    np.testing.assert_allclose(embedded.matrix(), client.embed(inputs).matrix(), atol=1e-5)
    np.testing.assert_allclose(
        similarity.cosine, client.similarity(["a red cube"], [IMAGE]).cosine, atol=1e-5
    )
    assert similarity.probabilities.shape == (1, 1)
    assert classified[0].label in ("cat", "cube")


def test_async_collections_and_errors(server) -> None:
    name = f"async-{uuid.uuid4().hex[:8]}"

    async def run():
        async with AsyncClient(server.address, timeout=60) as aclient:
            info = await aclient.collections.create(name)
            written = await aclient.collections.upsert(
                name, [Item("cube", "a red cube"), Item("photo", IMAGE)]
            )
            hits = await aclient.collections.search(name, IMAGE, top_k=1)
            got = await aclient.collections.get(name, ["cube"])
            stats = await aclient.collections.stats(name)
            listed = [c.name for c in await aclient.collections.list()]
            deleted = await aclient.collections.delete_items(name, ["cube"])
            await aclient.collections.delete(name)
            with pytest.raises(InvalidArgument) as caught:
                await aclient.embed([Input.image(b"not an image", id="broken")])
            return info, written, hits, got, stats, listed, deleted, caught.value

    info, written, hits, got, stats, listed, deleted, error = asyncio.run(run())
    assert info.name == name and written.upserted == 2
    assert hits.ids == ["photo"]
    assert [i.id for i in got.items] == ["cube"]
    assert stats.collection.count == 2 and name in listed
    assert deleted.deleted == 1
    assert '"broken"' in error.message
