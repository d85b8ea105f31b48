"""What the blocking and the asyncio clients share: settings, limits, channel and stubs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._batching import DEFAULT_MAX_ITEMS, DEFAULT_MAX_REQUEST_BYTES, BatchLimits
from ._connection import ConnectionSettings, Pem
from ._proto import collections_grpc, embedder_grpc


class ClientBase:
    """Builds the connection from the arguments both clients take (documented on `Client`);
    a subclass says which kind of channel to open and how its collections are reached."""

    def __init__(
        self,
        address: str | None = None,
        *,
        api_key: str | None = None,
        tls: bool | None = None,
        root_certificates: Pem | None = None,
        client_certificate: Pem | None = None,
        client_key: Pem | None = None,
        server_name: str | None = None,
        timeout: float | None = None,
        max_items: int = DEFAULT_MAX_ITEMS,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        channel_options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self._settings = ConnectionSettings.create(
            address,
            api_key=api_key,
            tls=tls,
            root_certificates=root_certificates,
            client_certificate=client_certificate,
            client_key=client_key,
            server_name=server_name,
            channel_options=channel_options,
        )
        self.limits = BatchLimits(max_items, max_request_bytes)
        self.timeout = timeout
        self._channel = self._open_channel(self._settings)
        self._stubs = {
            "embedder": embedder_grpc.EmbedderStub(self._channel),
            "collections": collections_grpc.CollectionsStub(self._channel),
        }
        self.collections = self._collections()

    def _open_channel(self, settings: ConnectionSettings) -> Any:
        raise NotImplementedError

    def _collections(self) -> Any:
        raise NotImplementedError

    @property
    def target(self) -> str:
        """The "host:port" connected to."""
        return self._settings.target
