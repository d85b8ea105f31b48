"""The asyncio client: `Client`'s methods as coroutines, over `grpc.aio`."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

import grpc
import grpc.aio

from . import _operations as ops
from ._client_base import ClientBase
from ._connection import ConnectionSettings
from .collection_types import (
    CollectionInfo,
    CollectionStats,
    DeleteResult,
    GetResult,
    HnswParams,
    SearchResult,
    UpsertResult,
)
from .errors import Unavailable, from_rpc_error
from .inputs import InputLike
from .results import ClassifyResult, EmbedResult, ModelInfo, SimilarityResult

R = TypeVar("R")


class AsyncClient(ClientBase):
    """A connection to a bindery server for asyncio code; arguments as for `Client`.

    Create it inside a running event loop, and close it (`await client.close()` or
    `async with AsyncClient() as client:`). The requests of a call split into batches are sent
    one after the other.
    """

    def _open_channel(self, settings: ConnectionSettings) -> Any:
        return settings.aio_channel()

    def _collections(self) -> AsyncCollections:
        return AsyncCollections(self)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Closes the channel."""
        await self._channel.close()

    async def wait_ready(self, timeout: float = 10.0) -> None:
        """Waits until the channel is connected; `Unavailable` after `timeout` seconds."""
        try:
            await asyncio.wait_for(self._channel.channel_ready(), timeout)
        except asyncio.TimeoutError:
            raise Unavailable(
                grpc.StatusCode.UNAVAILABLE, f"no connection to {self.target} within {timeout}s"
            ) from None

    async def _run(self, plan: ops.Plan[R]) -> R:
        method = getattr(self._stubs[plan.service], plan.method)
        metadata = self._settings.metadata()
        responses = []
        for index, request in enumerate(plan.requests):
            try:
                responses.append(await method(request, timeout=self.timeout, metadata=metadata))
            except grpc.RpcError as error:
                raise from_rpc_error(error, index) from error
        return plan.finish(responses)

    async def list_models(self) -> list[ModelInfo]:
        """The models the server has loaded."""
        return await self._run(ops.list_models())

    async def embed(
        self,
        inputs: Iterable[InputLike],
        *,
        model: str | None = None,
        normalize: bool = True,
        modality: str | None = None,
        cache: bool | None = None,
        dimensions: int | None = None,
        encoding: str = "float32",
    ) -> EmbedResult:
        """Embeds inputs of any modalities; see `Client.embed`."""
        return await self._run(
            ops.embed(
                inputs,
                model=model,
                normalize=normalize,
                modality=modality,
                cache=cache,
                dimensions=dimensions,
                encoding=encoding,
                limits=self.limits,
            )
        )

    async def similarity(
        self,
        queries: Any,
        candidates: Any,
        *,
        softmax: bool = False,
        model: str | None = None,
        logit_scale: float | None = None,
    ) -> SimilarityResult:
        """Cosine similarity of every query to every candidate; see `Client.similarity`."""
        return await self._run(
            ops.similarity(
                queries, candidates, softmax=softmax, model=model, logit_scale=logit_scale, limits=self.limits
            )
        )

    async def classify(
        self,
        inputs: Iterable[InputLike],
        labels: Sequence[str],
        *,
        templates: Sequence[str] | None = None,
        top_k: int | None = None,
        model: str | None = None,
        logit_scale: float | None = None,
        modality: str | None = None,
    ) -> ClassifyResult:
        """Zero-shot classification against text labels; see `Client.classify`."""
        return await self._run(
            ops.classify(
                inputs,
                labels,
                templates=templates,
                top_k=top_k,
                model=model,
                logit_scale=logit_scale,
                modality=modality,
                limits=self.limits,
            )
        )


class AsyncCollections:
    """`client.collections` of an `AsyncClient`; see `Collections` for each method."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(
        self,
        name: str,
        *,
        model: str | None = None,
        metric: str = "cosine",
        index: str = "exact",
        hnsw: HnswParams | None = None,
        allowed_keys: Sequence[str] | None = None,
        required_keys: Sequence[str] | None = None,
    ) -> CollectionInfo:
        """Creates an empty collection."""
        plan = ops.create_collection(
            name,
            model=model,
            metric=metric,
            index=index,
            hnsw=hnsw,
            allowed_keys=allowed_keys,
            required_keys=required_keys,
        )
        return await self._client._run(plan)

    async def list(self) -> builtins.list[CollectionInfo]:
        """Every collection, by name."""
        return await self._client._run(ops.list_collections())

    async def delete(self, name: str) -> None:
        """Deletes a collection and its data."""
        await self._client._run(ops.delete_collection(name))

    async def upsert(self, collection: str, items: Iterable[Any]) -> UpsertResult:
        """Inserts or replaces items: `Item`s, or (id, source[, metadata]) tuples."""
        return await self._client._run(ops.upsert(collection, items, self._client.limits))

    async def get(self, collection: str, ids: Iterable[str], *, include_vectors: bool = False) -> GetResult:
        """Items by id, and the ids that are not stored."""
        return await self._client._run(ops.get(collection, ids, include_vectors, self._client.limits))

    async def delete_items(self, collection: str, ids: Iterable[str]) -> DeleteResult:
        """Removes items by id."""
        return await self._client._run(ops.delete_items(collection, ids, self._client.limits))

    async def search(
        self,
        collection: str,
        query: Any,
        *,
        top_k: int = 10,
        modalities: Sequence[str] | None = None,
        metadata: Mapping[str, str] | None = None,
        exact: bool = False,
        include_vectors: bool = False,
        ef_search: int = 0,
    ) -> SearchResult:
        """The items nearest to an input or a vector."""
        plan = ops.search(
            collection,
            query,
            top_k=top_k,
            modalities=modalities,
            metadata=metadata,
            exact=exact,
            include_vectors=include_vectors,
            ef_search=ef_search,
        )
        return await self._client._run(plan)

    async def stats(self, collection: str) -> CollectionStats:
        """Counts, storage sizes and recovery report of a collection."""
        return await self._client._run(ops.stats(collection))
