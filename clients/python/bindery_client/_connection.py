"""Where and how to connect: the address, TLS credentials, the API key and channel options."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import grpc

#: Environment variable naming the server when the client is given no address.
SERVER_ENV = "BINDERY_SERVER"
#: Environment variable holding the API key when the client is given none.
API_KEY_ENV = "BINDERY_API_KEY"
#: The address of `make serve` / `bindery serve` with default options.
DEFAULT_ADDRESS = "127.0.0.1:50051"
DEFAULT_PORT = 50051

#: PEM given inline (bytes) or as a file path.
Pem = Union[bytes, str, "os.PathLike[str]"]


def parse_address(address: str | None) -> tuple[str, bool | None]:
    """The gRPC target ("host:port") of `address` and whether its scheme asks for TLS.

    Accepted: "host:port", "host" (port 50051), "http://host:port" (plaintext) and
    "https://host[:port]" (TLS, port 443 by default); IPv6 hosts in brackets. None falls back to
    $BINDERY_SERVER, then 127.0.0.1:50051. The TLS flag is None for a bare address.
    """
    address = (address or os.environ.get(SERVER_ENV) or DEFAULT_ADDRESS).strip()
    secure: bool | None = None
    port = DEFAULT_PORT
    if "://" in address:
        scheme, address = address.split("://", 1)
        scheme = scheme.lower()
        if scheme in ("http", "grpc"):
            secure = False
        elif scheme in ("https", "grpcs"):
            secure, port = True, 443
        else:
            raise ValueError(f"unsupported scheme {scheme!r} in the server address (use http:// or https://)")
        address = address.rstrip("/")
    if not address or "/" in address:
        raise ValueError(f"server address {address!r} is not host:port")
    has_port = "]:" in address if address.startswith("[") else ":" in address
    return (address if has_port else f"{address}:{port}"), secure


def _pem(value: Pem | None) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    return Path(value).read_bytes()


@dataclass(frozen=True)
class ConnectionSettings:
    """Everything needed to open a channel and authenticate calls."""

    target: str
    secure: bool
    root_certificates: bytes | None = None
    client_certificate: bytes | None = None
    client_key: bytes | None = None
    server_name: str | None = None
    api_key: str | None = None
    channel_options: tuple[tuple[str, Any], ...] = field(default_factory=tuple)

    @classmethod
    def create(
        cls,
        address: str | None,
        *,
        api_key: str | None,
        tls: bool | None,
        root_certificates: Pem | None,
        client_certificate: Pem | None,
        client_key: Pem | None,
        server_name: str | None,
        channel_options: Sequence[tuple[str, Any]],
    ) -> ConnectionSettings:
        """Resolves the client's arguments (see `Client`)."""
        target, scheme_secure = parse_address(address)
        wants_tls = any(v is not None for v in (root_certificates, client_certificate, client_key))
        if tls is None:
            tls = scheme_secure if scheme_secure is not None else wants_tls
        if not tls and wants_tls:
            raise ValueError("certificates were given but TLS is off (an http:// address or tls=False)")
        if (client_certificate is None) != (client_key is None):
            raise ValueError("mutual TLS needs both client_certificate and client_key")
        if api_key is None:
            api_key = os.environ.get(API_KEY_ENV) or None
        options: list[tuple[str, Any]] = [
            # Responses (Get with vectors, large similarity matrices) may exceed gRPC's 4 MiB
            # default; the server bounds what it sends.
            ("grpc.max_receive_message_length", -1),
            ("grpc.max_send_message_length", -1),
        ]
        if server_name:
            options.append(("grpc.ssl_target_name_override", server_name))
        options.extend(channel_options)
        return cls(
            target=target,
            secure=bool(tls),
            root_certificates=_pem(root_certificates),
            client_certificate=_pem(client_certificate),
            client_key=_pem(client_key),
            server_name=server_name,
            api_key=api_key,
            channel_options=tuple(options),
        )

    def credentials(self) -> grpc.ChannelCredentials:
        """TLS credentials: the given roots (else the system's) and the client identity, if any."""
        return grpc.ssl_channel_credentials(
            root_certificates=self.root_certificates,
            private_key=self.client_key,
            certificate_chain=self.client_certificate,
        )

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """Metadata sent with every call: the API key as `authorization: Bearer KEY`."""
        return (("authorization", f"Bearer {self.api_key}"),) if self.api_key else ()

    def channel(self) -> grpc.Channel:
        """A blocking channel."""
        if self.secure:
            return grpc.secure_channel(self.target, self.credentials(), options=self.channel_options)
        return grpc.insecure_channel(self.target, options=self.channel_options)

    def aio_channel(self) -> grpc.aio.Channel:
        """An asyncio channel."""
        if self.secure:
            return grpc.aio.secure_channel(self.target, self.credentials(), options=self.channel_options)
        return grpc.aio.insecure_channel(self.target, options=self.channel_options)
