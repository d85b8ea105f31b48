"""Items written to collections and what the collection calls return."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np

from ._proto import cpb
from .inputs import modality_from_proto

METRICS = {"cosine": cpb.METRIC_COSINE, "dot": cpb.METRIC_DOT, "l2": cpb.METRIC_L2}
INDEXES = {"exact": cpb.INDEX_KIND_EXACT, "hnsw": cpb.INDEX_KIND_HNSW}
_METRIC_NAMES = {value: name for name, value in METRICS.items()}
_INDEX_NAMES = {value: name for name, value in INDEXES.items()}


@dataclass(frozen=True)
class Item:
    """One item to upsert into a collection.

    Attributes:
        id: unique within the collection (1 to 256 bytes); an item of that id is replaced.
        source: what to store: anything `Client.embed` accepts (embedded with the collection's
            model), or a vector (numpy array, list of floats or `Embedding`).
        metadata: string metadata, checked against the collection's schema.
        modality: recorded with a vector item, for filtering (ignored for inputs).
    """

    id: str
    source: Any
    metadata: Mapping[str, str] = field(default_factory=dict)
    modality: str | None = None


@dataclass(frozen=True)
class HnswParams:
    """HNSW parameters; 0 takes the server's default (m 16, ef_construction 100, ef_search 128)."""

    m: int = 0
    ef_construction: int = 0
    ef_search: int = 0


@dataclass(frozen=True)
class CollectionInfo:
    """A collection's settings and size.

    Attributes:
        metric: "cosine", "dot" or "l2".
        index: "exact" or "hnsw".
        hnsw: the HNSW parameters, for an "hnsw" index.
        allowed_keys: metadata keys allowed besides the required ones (empty: any).
        required_keys: metadata keys every item must carry.
        count: items stored.
    """

    name: str
    model: str
    dimension: int
    metric: str
    index: str
    hnsw: HnswParams | None
    allowed_keys: list[str]
    required_keys: list[str]
    count: int

    @classmethod
    def from_proto(cls, message: Any) -> CollectionInfo:
        """Builds one from a `bindery.v1.CollectionInfo` message."""
        hnsw = message.hnsw if message.HasField("hnsw") else None
        return cls(
            name=message.name,
            model=message.model,
            dimension=message.dimension,
            metric=_METRIC_NAMES.get(message.metric, "cosine"),
            index=_INDEX_NAMES.get(message.index, "exact"),
            hnsw=HnswParams(hnsw.m, hnsw.ef_construction, hnsw.ef_search) if hnsw is not None else None,
            allowed_keys=list(message.schema.allowed_keys),
            required_keys=list(message.schema.required_keys),
            count=message.count,
        )


@dataclass(frozen=True)
class UpsertResult:
    """What an upsert wrote.

    Attributes:
        upserted: items written.
        sequence: the log sequence number of the (last) write.
    """

    upserted: int
    sequence: int


@dataclass(frozen=True, eq=False)  # == on numpy arrays gives an array, not a bool
class StoredItem:
    """An item as stored; `vector` is None unless asked for."""

    id: str
    modality: str
    metadata: dict[str, str]
    vector: np.ndarray | None = None

    @classmethod
    def from_proto(cls, message: Any, with_vector: bool) -> StoredItem:
        """Builds one from a `bindery.v1.StoredItem` message."""
        return cls(
            id=message.id,
            modality=modality_from_proto(message.modality),
            metadata=dict(message.metadata),
            vector=np.asarray(message.vector, dtype=np.float32) if with_vector else None,
        )


@dataclass(frozen=True)
class GetResult:
    """Items found (in request order) and the requested ids that are not stored."""

    items: list[StoredItem]
    missing_ids: list[str]


@dataclass(frozen=True)
class DeleteResult:
    """Items removed, requested ids that were not stored, and the (last) write's sequence."""

    deleted: int
    missing_ids: list[str]
    sequence: int


@dataclass(frozen=True, eq=False)  # == on numpy arrays gives an array, not a bool
class SearchHit:
    """One search result.

    Attributes:
        score: cosine or dot product (higher is nearer) or Euclidean distance (lower is nearer).
        vector: only when asked for.
    """

    id: str
    score: float
    modality: str
    metadata: dict[str, str]
    vector: np.ndarray | None = None

    @classmethod
    def from_proto(cls, message: Any, with_vector: bool) -> SearchHit:
        """Builds one from a `bindery.v1.SearchHit` message."""
        return cls(
            id=message.id,
            score=message.score,
            modality=modality_from_proto(message.modality),
            metadata=dict(message.metadata),
            vector=np.asarray(message.vector, dtype=np.float32) if with_vector else None,
        )


class SearchResult(Sequence[SearchHit]):
    """The hits of a search, nearest first.

    Attributes:
        exact: whether every item was scored (False when the HNSW index answered).
    """

    def __init__(self, hits: list[SearchHit], exact: bool) -> None:
        self._hits = hits
        self.exact = exact

    @overload
    def __getitem__(self, index: int) -> SearchHit: ...

    @overload
    def __getitem__(self, index: slice) -> list[SearchHit]: ...

    def __getitem__(self, index: Any) -> Any:
        return self._hits[index]

    def __len__(self) -> int:
        return len(self._hits)

    def __iter__(self) -> Iterator[SearchHit]:
        return iter(self._hits)

    def __repr__(self) -> str:
        return f"SearchResult(hits={[(h.id, round(h.score, 4)) for h in self._hits]}, exact={self.exact})"

    @property
    def ids(self) -> list[str]:
        """The hits' ids, nearest first."""
        return [h.id for h in self._hits]


@dataclass(frozen=True)
class CollectionStats:
    """Counts, storage sizes and recovery report of a collection (see collections.proto)."""

    collection: CollectionInfo
    count_by_modality: dict[str, int]
    last_sequence: int
    wal_bytes: int
    snapshot_bytes: int
    compactions: int
    recovered_records: int
    corrupt_tails: int
    truncated_bytes: int
    recovery_report: str
    index_tombstones: int
    index_ready: bool

    @classmethod
    def from_proto(cls, message: Any) -> CollectionStats:
        """Builds one from a `bindery.v1.StatsResponse` message."""
        return cls(
            collection=CollectionInfo.from_proto(message.collection),
            count_by_modality=dict(message.count_by_modality),
            last_sequence=message.last_sequence,
            wal_bytes=message.wal_bytes,
            snapshot_bytes=message.snapshot_bytes,
            compactions=message.compactions,
            recovered_records=message.recovered_records,
            corrupt_tails=message.corrupt_tails,
            truncated_bytes=message.truncated_bytes,
            recovery_report=message.recovery_report,
            index_tombstones=message.index_tombstones,
            index_ready=message.index_ready,
        )


def metric_to_proto(metric: str) -> cpb.Metric:
    """The proto enum of a metric name."""
    try:
        return METRICS[metric]
    except KeyError:
        raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}") from None


def index_to_proto(index: str) -> cpb.IndexKind:
    """The proto enum of an index kind name."""
    try:
        return INDEXES[index]
    except KeyError:
        raise ValueError(f"unknown index {index!r}; expected one of {', '.join(INDEXES)}") from None
