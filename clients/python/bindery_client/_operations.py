"""Every call as a plan: the requests to send, in order, and how to combine their responses.

`Client` and `AsyncClient` only differ in how they send requests, so all request building,
batching and result assembly lives here, once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Any, Generic, TypeVar

import numpy as np

from ._batching import BatchLimits, chunk, message_size
from ._proto import cpb, pb
from .collection_types import (
    CollectionInfo,
    CollectionStats,
    DeleteResult,
    GetResult,
    HnswParams,
    Item,
    SearchHit,
    SearchResult,
    StoredItem,
    UpsertResult,
    index_to_proto,
    metric_to_proto,
)
from .inputs import Input, InputLike, as_input, modality_to_proto
from .results import (
    Classification,
    ClassifyResult,
    Embedding,
    EmbedResult,
    ModelInfo,
    SimilarityResult,
    encoding_to_proto,
)

R = TypeVar("R")


@dataclass
class Plan(Generic[R]):
    """The requests of one call and how to turn their responses into its result.

    Attributes:
        service: "embedder" or "collections".
        method: the RPC name, e.g. "Embed".
        requests: the requests, built lazily so that files are read batch by batch.
        finish: combines the responses, in request order, into the result.
    """

    service: str
    method: str
    requests: Iterable[Any]
    finish: Callable[[list[Any]], R]


def is_vector(value: Any) -> bool:
    """Whether `value` is a vector (numpy array, `Embedding`, or a list/tuple of numbers)."""
    if isinstance(value, (np.ndarray, Embedding)):
        return True
    return (
        isinstance(value, (list, tuple))
        and len(value) > 0
        and isinstance(value[0], (Real, np.number))
        and not isinstance(value[0], bool)
    )


def vector_proto(value: Any) -> Any:
    """A `bindery.v1.Vector` of a vector-like value."""
    array = np.asarray(value.vector if isinstance(value, Embedding) else value, dtype=np.float32)
    if array.ndim != 1:
        raise ValueError(f"a vector must be 1-D, not shape {array.shape}")
    return pb.Vector(values=array.tolist())


def _inputs(values: Iterable[InputLike], modality: str | None) -> list[Input]:
    # Converted up front: a value that is not an input fails the call before anything is sent.
    if isinstance(values, (str, bytes)) or isinstance(values, Input):
        raise TypeError("pass a list of inputs, not a single input")
    return [as_input(value, modality) for value in values]


def _input_protos(inputs: list[Input]) -> Iterator[Any]:
    # Unnamed inputs get their position in the whole call, which the server would give them only
    # within one request.
    return (item.to_proto(item.id_or(f"#{position}")) for position, item in enumerate(inputs))


def list_models() -> Plan[list[ModelInfo]]:
    """ListModels."""
    return Plan(
        "embedder",
        "ListModels",
        [pb.ListModelsRequest()],
        lambda responses: [ModelInfo.from_proto(m) for m in responses[0].models],
    )


def embed(
    values: Iterable[InputLike],
    *,
    model: str | None,
    normalize: bool,
    modality: str | None,
    cache: bool | None,
    dimensions: int | None,
    encoding: str,
    limits: BatchLimits,
) -> Plan[EmbedResult]:
    """Embed, split into requests under `limits`."""
    inputs = _inputs(values, modality)
    options: dict[str, Any] = {
        "model": model or "",
        "normalize": normalize,
        "encoding": encoding_to_proto(encoding),
    }
    if cache is not None:
        options["cache"] = cache
    if dimensions:
        options["dimensions"] = dimensions
    groups = chunk(_input_protos(inputs), message_size, limits.max_items, limits.max_request_bytes)
    requests = (pb.EmbedRequest(inputs=group, **options) for group in groups)

    def finish(responses: list[Any]) -> EmbedResult:
        embeddings = [Embedding.from_proto(e) for response in responses for e in response.embeddings]
        return EmbedResult(embeddings, responses[0].model if responses else (model or ""))

    return Plan("embedder", "Embed", requests, finish)


def classify(
    values: Iterable[InputLike],
    labels: Sequence[str],
    *,
    templates: Sequence[str] | None,
    top_k: int | None,
    model: str | None,
    logit_scale: float | None,
    modality: str | None,
    limits: BatchLimits,
) -> Plan[ClassifyResult]:
    """Classify, split into requests under `limits` (every request carries all labels)."""
    if isinstance(labels, str):
        raise TypeError("labels must be a list of strings, not one string")
    labels = list(labels)
    inputs = _inputs(values, modality)
    if top_k is None:
        top_k = min(5, len(labels))
    base = pb.ClassifyRequest(model=model or "", labels=labels, templates=list(templates or []), top_k=top_k)
    if logit_scale is not None:
        base.logit_scale = logit_scale
    room = max(1, limits.max_request_bytes - base.ByteSize())
    groups = chunk(_input_protos(inputs), message_size, limits.max_items, room)

    def request(group: list[Any]) -> Any:
        message = pb.ClassifyRequest()
        message.CopyFrom(base)
        message.inputs.extend(group)
        return message

    def finish(responses: list[Any]) -> ClassifyResult:
        return ClassifyResult(
            [Classification.from_proto(c) for response in responses for c in response.results],
            responses[0].model if responses else (model or ""),
            labels,
            sum(r.label_cache_hits for r in responses),
            sum(r.label_cache_misses for r in responses),
        )

    return Plan("embedder", "Classify", (request(group) for group in groups), finish)


def _similarity_items(values: Any, side: str) -> list[Any]:
    if isinstance(values, np.ndarray):
        if values.ndim != 2:
            raise ValueError(f"{side} as an array must be 2-D (one vector per row), not shape {values.shape}")
        values = list(values)
    elif isinstance(values, (str, bytes, Input)):
        raise TypeError(f"{side} must be a list, not a single input")
    items = []
    for position, value in enumerate(values):
        if is_vector(value):
            items.append(pb.SimilarityItem(vector=vector_proto(value)))
        else:
            single = as_input(value)
            items.append(pb.SimilarityItem(input=single.to_proto(single.id_or(f"{side}[{position}]"))))
    if not items:
        raise ValueError(f"similarity needs at least one of {side}")
    return items


def _ranges(sizes: list[int], max_items: int, max_bytes: int) -> list[tuple[int, int]]:
    """Consecutive (start, end) index ranges of entries of `sizes` under the limits."""
    ranges = []
    start = 0
    for group in chunk(range(len(sizes)), sizes.__getitem__, max_items, max_bytes):
        ranges.append((start, start + len(group)))
        start += len(group)
    return ranges


def _similarity_grid(
    query_sizes: list[int], candidate_sizes: list[int], limits: BatchLimits
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Row and column ranges whose every (rows, columns) block fits one request: queries and
    candidates count together against the server's limit."""
    n, budget = limits.max_items, limits.max_request_bytes
    rows, cols = len(query_sizes), len(candidate_sizes)
    q_bytes, c_bytes = sum(query_sizes), sum(candidate_sizes)
    if rows + cols <= n and q_bytes + c_bytes <= budget:
        return [(0, rows)], [(0, cols)]
    if n < 2:
        raise ValueError("similarity needs max_items of at least 2 (a query and a candidate)")
    # When one side fits in half the budget it is sent whole with every request and the other
    # side is split; otherwise both are split and each block is one request.
    if cols <= n // 2 and c_bytes <= budget // 2:
        return _ranges(query_sizes, n - cols, budget - c_bytes), [(0, cols)]
    if rows <= n // 2 and q_bytes <= budget // 2:
        return [(0, rows)], _ranges(candidate_sizes, n - rows, budget - q_bytes)
    return _ranges(query_sizes, n - n // 2, budget // 2), _ranges(candidate_sizes, n // 2, budget // 2)


def similarity(
    queries: Any,
    candidates: Any,
    *,
    softmax: bool,
    model: str | None,
    logit_scale: float | None,
    limits: BatchLimits,
) -> Plan[SimilarityResult]:
    """Similarity, split into a grid of requests when queries and candidates exceed `limits`."""
    query_items = _similarity_items(queries, "queries")
    candidate_items = _similarity_items(candidates, "candidates")
    row_ranges, col_ranges = _similarity_grid(
        [m.ByteSize() for m in query_items], [m.ByteSize() for m in candidate_items], limits
    )
    options: dict[str, Any] = {"model": model or "", "softmax": softmax}
    if logit_scale is not None:
        options["logit_scale"] = logit_scale
    requests = (
        pb.SimilarityRequest(queries=query_items[r0:r1], candidates=candidate_items[c0:c1], **options)
        for r0, r1 in row_ranges
        for c0, c1 in col_ranges
    )

    def finish(responses: list[Any]) -> SimilarityResult:
        shape = (len(query_items), len(candidate_items))
        cosine = np.empty(shape, dtype=np.float32)
        logits = np.empty(shape, dtype=np.float32)
        probabilities = np.empty(shape, dtype=np.float32)
        blocks = iter(responses)
        for r0, r1 in row_ranges:
            for c0, c1 in col_ranges:
                response = next(blocks)
                block = (r1 - r0, c1 - c0)
                cosine[r0:r1, c0:c1] = np.asarray(response.cosine, dtype=np.float32).reshape(block)
                if softmax:
                    logits[r0:r1, c0:c1] = np.asarray(response.logits, dtype=np.float32).reshape(block)
                    probabilities[r0:r1, c0:c1] = np.asarray(
                        response.probabilities, dtype=np.float32
                    ).reshape(block)
        if not softmax:
            return SimilarityResult(responses[0].model, cosine)
        if len(col_ranges) > 1:
            # Each request's probabilities cover only its columns: redo the softmax over whole rows.
            wide = logits.astype(np.float64)
            wide = np.exp(wide - wide.max(axis=1, keepdims=True))
            probabilities = (wide / wide.sum(axis=1, keepdims=True)).astype(np.float32)
        return SimilarityResult(responses[0].model, cosine, logits, probabilities)

    return Plan("embedder", "Similarity", requests, finish)


# Collections.


def create_collection(
    name: str,
    *,
    model: str | None,
    metric: str,
    index: str,
    hnsw: HnswParams | None,
    allowed_keys: Sequence[str] | None,
    required_keys: Sequence[str] | None,
) -> Plan[CollectionInfo]:
    """CreateCollection."""
    request = cpb.CreateCollectionRequest(
        name=name, model=model or "", metric=metric_to_proto(metric), index=index_to_proto(index)
    )
    if hnsw is not None:
        request.hnsw.CopyFrom(
            cpb.HnswParams(m=hnsw.m, ef_construction=hnsw.ef_construction, ef_search=hnsw.ef_search)
        )
    if allowed_keys or required_keys:
        request.schema.CopyFrom(
            cpb.MetadataSchema(allowed_keys=list(allowed_keys or []), required_keys=list(required_keys or []))
        )
    return Plan(
        "collections", "CreateCollection", [request], lambda r: CollectionInfo.from_proto(r[0].collection)
    )


def list_collections() -> Plan[list[CollectionInfo]]:
    """ListCollections."""
    return Plan(
        "collections",
        "ListCollections",
        [cpb.ListCollectionsRequest()],
        lambda r: [CollectionInfo.from_proto(c) for c in r[0].collections],
    )


def delete_collection(name: str) -> Plan[None]:
    """DeleteCollection."""
    return Plan("collections", "DeleteCollection", [cpb.DeleteCollectionRequest(name=name)], lambda r: None)


def _item(value: Any) -> tuple[Item, Input | None]:
    item = value if isinstance(value, Item) else Item(*value)
    if not isinstance(item.id, str) or not item.id:
        raise ValueError(f"an item needs a non-empty string id, not {item.id!r}")
    return item, None if is_vector(item.source) else as_input(item.source)


def _item_proto(item: Item, source: Input | None) -> Any:
    if source is not None:
        return cpb.Item(
            id=item.id, input=source.to_proto(source.id_or(item.id)), metadata=dict(item.metadata)
        )
    modality = item.modality or (item.source.modality if isinstance(item.source, Embedding) else None)
    return cpb.Item(
        id=item.id,
        vector=vector_proto(item.source),
        metadata=dict(item.metadata),
        modality=modality_to_proto(modality) if modality else pb.MODALITY_UNSPECIFIED,
    )


def upsert(collection: str, items: Iterable[Any], limits: BatchLimits) -> Plan[UpsertResult]:
    """Upsert, split into requests under `limits`; each request is applied on its own."""
    checked = [_item(value) for value in items]
    protos = (_item_proto(item, source) for item, source in checked)
    groups = chunk(protos, message_size, limits.max_items, limits.max_request_bytes)
    requests = (cpb.UpsertRequest(collection=collection, items=group) for group in groups)

    def finish(responses: list[Any]) -> UpsertResult:
        return UpsertResult(
            sum(r.upserted for r in responses), max((r.sequence for r in responses), default=0)
        )

    return Plan("collections", "Upsert", requests, finish)


def _ids(ids: Iterable[str], limits: BatchLimits) -> Iterator[list[str]]:
    if isinstance(ids, str):
        raise TypeError("ids must be a list of strings, not one string")
    return chunk(list(ids), lambda i: len(i.encode()), limits.max_items, limits.max_request_bytes)


def get(collection: str, ids: Iterable[str], include_vectors: bool, limits: BatchLimits) -> Plan[GetResult]:
    """Get, split into requests under `limits`."""
    requests = (
        cpb.GetRequest(collection=collection, ids=group, include_vectors=include_vectors)
        for group in _ids(ids, limits)
    )

    def finish(responses: list[Any]) -> GetResult:
        return GetResult(
            [StoredItem.from_proto(i, include_vectors) for r in responses for i in r.items],
            [i for r in responses for i in r.missing_ids],
        )

    return Plan("collections", "Get", requests, finish)


def delete_items(collection: str, ids: Iterable[str], limits: BatchLimits) -> Plan[DeleteResult]:
    """Delete (items), split into requests under `limits`."""
    requests = (cpb.DeleteRequest(collection=collection, ids=group) for group in _ids(ids, limits))

    def finish(responses: list[Any]) -> DeleteResult:
        return DeleteResult(
            sum(r.deleted for r in responses),
            [i for r in responses for i in r.missing_ids],
            max((r.sequence for r in responses), default=0),
        )

    return Plan("collections", "Delete", requests, finish)


def search(
    collection: str,
    query: Any,
    *,
    top_k: int,
    modalities: Sequence[str] | None,
    metadata: Mapping[str, str] | None,
    exact: bool,
    include_vectors: bool,
    ef_search: int,
) -> Plan[SearchResult]:
    """Search with an input or a vector."""
    request = cpb.SearchRequest(
        collection=collection, top_k=top_k, exact=exact, include_vectors=include_vectors, ef_search=ef_search
    )
    if is_vector(query):
        request.vector.CopyFrom(vector_proto(query))
    else:
        single = as_input(query)
        request.input.CopyFrom(single.to_proto(single.id_or("query")))
    if modalities:
        request.filter.modalities.extend(modality_to_proto(m) for m in modalities)
    if metadata:
        request.filter.metadata.update(metadata)

    def finish(responses: list[Any]) -> SearchResult:
        reply = responses[0]
        return SearchResult([SearchHit.from_proto(h, include_vectors) for h in reply.hits], reply.exact)

    return Plan("collections", "Search", [request], finish)


def stats(name: str) -> Plan[CollectionStats]:
    """Stats."""
    return Plan(
        "collections",
        "Stats",
        [cpb.StatsRequest(collection=name)],
        lambda r: CollectionStats.from_proto(r[0]),
    )
