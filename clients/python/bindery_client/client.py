"""The blocking client."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

import grpc

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


class Client(ClientBase):
    """A connection to a bindery server.

    Example:
        >>> from pathlib import Path
        >>> client = Client()  # $BINDERY_SERVER, else 127.0.0.1:50051
        >>> result = client.embed(["a red cube", Path("cube.jpg")])
        >>> result.matrix().shape
        (2, 1024)

    Args:
        address: "host:port", "http://host:port" or "https://host[:port]"; default
            $BINDERY_SERVER, else "127.0.0.1:50051".
        api_key: sent as `authorization: Bearer KEY` with every call; default $BINDERY_API_KEY.
        tls: force TLS on or off; by default on for https:// or when certificates are given.
        root_certificates: PEM (bytes or a file path) of the CA to trust; default: the system's.
        client_certificate: PEM certificate chain for mutual TLS (with `client_key`).
        client_key: PEM private key of `client_certificate`.
        server_name: the name the server certificate must carry, when it differs from the host
            in `address` (e.g. "localhost" while connecting to 127.0.0.1).
        timeout: seconds each request may take; None waits indefinitely.
        max_items: most entries per request (match the server's --max-items); larger calls
            are split into several requests, keeping their order.
        max_request_bytes: most entry bytes per request (keep under the server's
            --max-message-bytes).
        channel_options: extra gRPC channel options.

    Calls raise `BinderyError` (a subclass per common status code) on failure.
    """

    def _open_channel(self, settings: ConnectionSettings) -> Any:
        return settings.channel()

    def _collections(self) -> Collections:
        return Collections(self)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes the channel."""
        self._channel.close()

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Blocks until the channel is connected (the server may still be warming up).

        Raises:
            Unavailable: when it is not connected within `timeout` seconds.
        """
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise Unavailable(
                grpc.StatusCode.UNAVAILABLE, f"no connection to {self.target} within {timeout}s"
            ) from None

    def _run(self, plan: ops.Plan[R]) -> R:
        method = getattr(self._stubs[plan.service], plan.method)
        metadata = self._settings.metadata()
        responses = []
        for index, request in enumerate(plan.requests):
            try:
                responses.append(method(request, timeout=self.timeout, metadata=metadata))
            except grpc.RpcError as error:
                raise from_rpc_error(error, index) from error
        return plan.finish(responses)

    def list_models(self) -> list[ModelInfo]:
        """The models the server has loaded."""
        return self._run(ops.list_models())

    def embed(
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
        """Embeds inputs of any modalities into the model's shared space.

        Args:
            inputs: a `str` is text; a `pathlib.Path` or `bytes` is a file whose modality is
                sniffed from its content (then its extension); an `Input` says it explicitly.
            model: the model's name; None uses the server's default model.
            normalize: unit-norm vectors (default); False returns the towers' raw outputs.
            modality: the modality of every file input (e.g. "thermal"), instead of sniffing.
            cache: use the server's embedding cache (None: the server's default).
            dimensions: keep only the first `dimensions` values of each vector, renormalised
                (only Matryoshka-trained models keep their quality; ImageBind does not).
            encoding: how vectors travel: "float32" (default), "float16", "bfloat16", "int8" or
                "binary"; they are decoded back into float32 `vector`s (binary: 0.0/1.0 per
                bit), and each `Embedding.packed` keeps the packed bytes.

        Returns:
            The embeddings in input order (`.matrix()` stacks them). Unnamed inputs are named by
            their path, or by their position "#0", "#1", ...
        """
        return self._run(
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

    def similarity(
        self,
        queries: Any,
        candidates: Any,
        *,
        softmax: bool = False,
        model: str | None = None,
        logit_scale: float | None = None,
    ) -> SimilarityResult:
        """Cosine similarity of every query to every candidate, in any modalities.

        Args:
            queries: inputs (as for `embed`) or vectors (numpy arrays, lists of floats,
                `Embedding`s, or a 2-D array of one vector per row). Unnamed inputs are named
                "queries[i]" in error messages.
            candidates: the same, for the columns ("candidates[j]").
            softmax: also return logits and the softmax over candidates of each query.
            logit_scale: the softmax's scale; default: the product of the two modalities'
                scales from the model (a vector counts as 1).
        """
        return self._run(
            ops.similarity(
                queries, candidates, softmax=softmax, model=model, logit_scale=logit_scale, limits=self.limits
            )
        )

    def classify(
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
        """Zero-shot classification of inputs of any modality against text labels.

        Args:
            inputs: as for `embed`.
            labels: class names.
            templates: prompts holding one "{}" for the label, e.g. "a photo of a {}."; a
                label's embedding is the mean over its templates. Default: the label itself.
            top_k: labels listed in each result's `top`; None: 5 (or fewer labels); 0: all.
            logit_scale: default: the input modality's scale times the text scale.
            modality: the modality of every file input, instead of sniffing.
        """
        return self._run(
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


class Collections:
    """Durable, searchable collections of embeddings (`client.collections`)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
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
        """Creates an empty collection; `AlreadyExists` when the name is taken.

        Args:
            name: 1 to 64 ASCII letters, digits, '_', '-' and '.', starting with a letter or digit.
            model: the model whose space it lives in; None: the server's default.
            metric: "cosine", "dot" or "l2".
            index: "exact", or "hnsw" (approximate; cosine and l2 only).
            hnsw: HNSW parameters.
            allowed_keys: metadata keys allowed besides the required ones (None: any key).
            required_keys: metadata keys every item must carry.
        """
        plan = ops.create_collection(
            name,
            model=model,
            metric=metric,
            index=index,
            hnsw=hnsw,
            allowed_keys=allowed_keys,
            required_keys=required_keys,
        )
        return self._client._run(plan)

    def list(self) -> builtins.list[CollectionInfo]:
        """Every collection, by name."""
        return self._client._run(ops.list_collections())

    def delete(self, name: str) -> None:
        """Deletes a collection and its data; `NotFound` when there is none of that name."""
        self._client._run(ops.delete_collection(name))

    def upsert(self, collection: str, items: Iterable[Any]) -> UpsertResult:
        """Inserts or replaces items: `Item`s, or (id, source[, metadata]) tuples.

        A source is anything `Client.embed` accepts (embedded with the collection's model) or a
        vector. Each request is all-or-nothing on the server; when the items are split into
        several requests and one fails, the error's `request_index` tells how many were applied.
        """
        return self._client._run(ops.upsert(collection, items, self._client.limits))

    def get(self, collection: str, ids: Iterable[str], *, include_vectors: bool = False) -> GetResult:
        """Items by id, in request order, and the ids that are not stored."""
        return self._client._run(ops.get(collection, ids, include_vectors, self._client.limits))

    def delete_items(self, collection: str, ids: Iterable[str]) -> DeleteResult:
        """Removes items by id; ids not stored are reported in `missing_ids`, not an error."""
        return self._client._run(ops.delete_items(collection, ids, self._client.limits))

    def search(
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
        """The items nearest to `query`: an input of any modality (as for `embed`) or a vector.

        Args:
            top_k: how many hits (1 to 10000).
            modalities: only items of these modalities.
            metadata: only items carrying every one of these key = value pairs.
            exact: score every item even with an HNSW index.
            include_vectors: return the hits' vectors too.
            ef_search: HNSW candidate list size (0: the collection's).
        """
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
        return self._client._run(plan)

    def stats(self, collection: str) -> CollectionStats:
        """Counts, storage sizes and recovery report of a collection."""
        return self._client._run(ops.stats(collection))
