"""Python client for bindery: embeddings of text, images, audio, point clouds, depth maps,
thermal images and IMU series in one shared space, similarity, zero-shot classification and
durable collections.

    >>> from pathlib import Path
    >>> from bindery_client import Client
    >>> client = Client()  # $BINDERY_SERVER, else 127.0.0.1:50051
    >>> client.embed(["a red cube", Path("cube.jpg")]).matrix()
"""

from ._batching import BatchLimits
from .aio import AsyncClient, AsyncCollections
from .client import Client, Collections
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
)
from .errors import (
    AlreadyExists,
    BinderyError,
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from .inputs import MODALITIES, Input, detect_modality, sniff_modality
from .results import (
    Classification,
    ClassifyResult,
    Embedding,
    EmbedResult,
    LabelScore,
    ModelInfo,
    SimilarityResult,
)

__version__ = "0.1.0"

__all__ = [
    "AlreadyExists",
    "AsyncClient",
    "AsyncCollections",
    "BatchLimits",
    "BinderyError",
    "Classification",
    "ClassifyResult",
    "Client",
    "CollectionInfo",
    "CollectionStats",
    "Collections",
    "DeadlineExceeded",
    "DeleteResult",
    "EmbedResult",
    "Embedding",
    "GetResult",
    "HnswParams",
    "Input",
    "InvalidArgument",
    "Item",
    "LabelScore",
    "MODALITIES",
    "ModelInfo",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "SearchHit",
    "SearchResult",
    "SimilarityResult",
    "StoredItem",
    "Unauthenticated",
    "Unavailable",
    "UpsertResult",
    "detect_modality",
    "sniff_modality",
]
