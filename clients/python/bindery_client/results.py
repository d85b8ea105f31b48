"""What the embedder calls return: embeddings, similarity matrices, classifications, models."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np

from ._proto import pb
from .inputs import modality_from_proto

#: Wire encodings of embeddings (`Client.embed(encoding=...)`).
ENCODINGS: dict[str, pb.Encoding] = {
    "float32": pb.ENCODING_FLOAT32,
    "float16": pb.ENCODING_FLOAT16,
    "bfloat16": pb.ENCODING_BFLOAT16,
    "int8": pb.ENCODING_INT8,
    "binary": pb.ENCODING_BINARY,
}
_ENCODING_NAMES = {value: name for name, value in ENCODINGS.items()}


def encoding_to_proto(name: str) -> pb.Encoding:
    """The proto enum of an encoding name such as "int8"."""
    try:
        return ENCODINGS[name]
    except KeyError:
        raise ValueError(f"unknown encoding {name!r}; expected one of {', '.join(ENCODINGS)}") from None


def decode_vector(message: Any) -> np.ndarray:
    """The float32 vector of a `bindery.v1.Embedding`, unpacking its encoding (binary: 1.0 for
    each set bit, i.e. each value that was > 0, else 0.0)."""
    data = message.packed
    if message.encoding == pb.ENCODING_FLOAT16:
        return np.frombuffer(data, dtype="<f2").astype(np.float32)
    if message.encoding == pb.ENCODING_BFLOAT16:
        # bfloat16 is the top half of a float32.
        return (np.frombuffer(data, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
    if message.encoding == pb.ENCODING_INT8:
        return np.frombuffer(data, dtype=np.int8).astype(np.float32) * np.float32(message.scale)
    if message.encoding == pb.ENCODING_BINARY:
        bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
        return bits[: message.dimension].astype(np.float32)
    return np.asarray(message.vector, dtype=np.float32)


@dataclass(frozen=True, eq=False)  # == on numpy arrays gives an array, not a bool
class Embedding:
    """The embedding of one input.

    Attributes:
        id: the input's id.
        modality: "text", "image", "audio", "point_cloud", "depth", "thermal", "imu" or "video".
        vector: float32 vector (unit norm unless the call asked for raw outputs), decoded from
            the wire encoding when the call asked for one.
        model: the model that embedded it.
        dropped_points: point clouds only: points dropped for a NaN or infinite value.
        encoding: the wire encoding: "float32", "float16", "bfloat16", "int8" or "binary".
        packed: the vector as the server packed it (empty for "float32"), e.g. to store it so.
        scale: "int8" only: value ~= signed byte * scale.
    """

    id: str
    modality: str
    vector: np.ndarray
    model: str
    dropped_points: int = 0
    encoding: str = "float32"
    packed: bytes = b""
    scale: float = 0.0

    @classmethod
    def from_proto(cls, message: Any) -> Embedding:
        """Builds one from a `bindery.v1.Embedding` message."""
        return cls(
            id=message.id,
            modality=modality_from_proto(message.modality),
            vector=decode_vector(message),
            model=message.model,
            dropped_points=message.dropped_points,
            encoding=_ENCODING_NAMES.get(message.encoding, "float32"),
            packed=message.packed,
            scale=message.scale,
        )


class EmbedResult(Sequence[Embedding]):
    """The embeddings of a call, in input order; `matrix()` stacks them into one array.

    Attributes:
        model: the model that served the call.
    """

    def __init__(self, embeddings: list[Embedding], model: str) -> None:
        self._embeddings = embeddings
        self.model = model

    @overload
    def __getitem__(self, index: int) -> Embedding: ...

    @overload
    def __getitem__(self, index: slice) -> list[Embedding]: ...

    def __getitem__(self, index: Any) -> Any:
        return self._embeddings[index]

    def __len__(self) -> int:
        return len(self._embeddings)

    def __iter__(self) -> Iterator[Embedding]:
        return iter(self._embeddings)

    def __repr__(self) -> str:
        return f"EmbedResult(model={self.model!r}, embeddings={len(self)}, dimension={self.dimension})"

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        matrix = self.matrix()
        return matrix if dtype is None else matrix.astype(dtype)

    @property
    def dimension(self) -> int:
        """The embedding dimension (0 for an empty result)."""
        return len(self._embeddings[0].vector) if self._embeddings else 0

    @property
    def ids(self) -> list[str]:
        """The ids, in input order."""
        return [e.id for e in self._embeddings]

    def matrix(self) -> np.ndarray:
        """The vectors stacked as a float32 array of shape (inputs, dimension)."""
        if not self._embeddings:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([e.vector for e in self._embeddings])

    def by_id(self) -> dict[str, Embedding]:
        """The embeddings keyed by id (a repeated id keeps its last embedding)."""
        return {e.id: e for e in self._embeddings}


@dataclass(frozen=True, eq=False)  # == on numpy arrays gives an array, not a bool
class SimilarityResult:
    """Cosine similarities of queries (rows) to candidates (columns).

    Attributes:
        model: the model that served the call.
        cosine: float32 array (queries, candidates).
        logits: with softmax: logit_scale * cosine per pair, else None.
        probabilities: with softmax: softmax of each row of `logits`, else None.
    """

    model: str
    cosine: np.ndarray
    logits: np.ndarray | None = None
    probabilities: np.ndarray | None = None


@dataclass(frozen=True)
class LabelScore:
    """A label with its probability and cosine similarity for one input."""

    label: str
    probability: float
    cosine: float


@dataclass(frozen=True, eq=False)  # == on numpy arrays gives an array, not a bool
class Classification:
    """The classification of one input.

    Attributes:
        id: the input's id.
        modality: the input's modality.
        probabilities: float32 softmax over the labels, in label order.
        cosines: float32 cosine similarity to each label, in label order.
        top: the `top_k` most probable labels, most probable first.
        logit_scale: the logit scale used.
    """

    id: str
    modality: str
    probabilities: np.ndarray
    cosines: np.ndarray
    top: list[LabelScore]
    logit_scale: float

    @property
    def label(self) -> str:
        """The most probable label."""
        return self.top[0].label

    @classmethod
    def from_proto(cls, message: Any) -> Classification:
        """Builds one from a `bindery.v1.Classification` message."""
        return cls(
            id=message.id,
            modality=modality_from_proto(message.modality),
            probabilities=np.asarray(message.probabilities, dtype=np.float32),
            cosines=np.asarray(message.cosines, dtype=np.float32),
            top=[LabelScore(s.label, s.probability, s.cosine) for s in message.top],
            logit_scale=message.logit_scale,
        )


class ClassifyResult(Sequence[Classification]):
    """The classifications of a call, in input order.

    Attributes:
        model: the model that served the call.
        labels: the labels, in request order (the order of `probabilities` and `cosines`).
        label_cache_hits: labels whose embedding came from the server's cache, summed over the
            call's requests.
        label_cache_misses: labels embedded by the call, summed over its requests.
    """

    def __init__(
        self,
        results: list[Classification],
        model: str,
        labels: list[str],
        label_cache_hits: int,
        label_cache_misses: int,
    ) -> None:
        self._results = results
        self.model = model
        self.labels = labels
        self.label_cache_hits = label_cache_hits
        self.label_cache_misses = label_cache_misses

    @overload
    def __getitem__(self, index: int) -> Classification: ...

    @overload
    def __getitem__(self, index: slice) -> list[Classification]: ...

    def __getitem__(self, index: Any) -> Any:
        return self._results[index]

    def __len__(self) -> int:
        return len(self._results)

    def __iter__(self) -> Iterator[Classification]:
        return iter(self._results)

    def __repr__(self) -> str:
        return f"ClassifyResult(model={self.model!r}, inputs={len(self)}, labels={len(self.labels)})"

    def probabilities(self) -> np.ndarray:
        """float32 array (inputs, labels) of the probabilities."""
        if not self._results:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return np.stack([r.probabilities for r in self._results])


@dataclass(frozen=True)
class ModelInfo:
    """A model the server has loaded.

    Attributes:
        logit_scales: the reference model's logit scale per modality it serves.
    """

    name: str
    dimension: int
    modalities: list[str]
    logit_scales: dict[str, float]
    family: str
    description: str
    is_default: bool

    @classmethod
    def from_proto(cls, message: Any) -> ModelInfo:
        """Builds one from a `bindery.v1.ModelInfo` message."""
        modalities = [modality_from_proto(m.modality) for m in message.modalities]
        return cls(
            name=message.name,
            dimension=message.dimension,
            modalities=modalities,
            logit_scales={modality_from_proto(m.modality): m.logit_scale for m in message.modalities},
            family=message.family,
            description=message.description,
            is_default=message.is_default,
        )
