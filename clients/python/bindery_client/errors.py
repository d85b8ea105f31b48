"""Exceptions raised by the client: one class per gRPC status a caller is likely to handle."""

from __future__ import annotations

import grpc


class BinderyError(Exception):
    """A call the server (or the transport) failed.

    Attributes:
        code: the gRPC status code, e.g. `grpc.StatusCode.INVALID_ARGUMENT`.
        message: the server's message, e.g. `input "photo" (image): cannot decode image: ...`.
        request_index: which request of the call failed when the client split the call into
            several requests (0 for the first); the requests before it were applied.
    """

    def __init__(self, code: grpc.StatusCode, message: str, request_index: int = 0) -> None:
        self.code = code
        self.message = message
        self.request_index = request_index
        text = f"{code.name}: {message}"
        if request_index:
            text += f" (request {request_index + 1} of the call; the requests before it succeeded)"
        super().__init__(text)

    @property
    def code_name(self) -> str:
        """The status code's name, e.g. "INVALID_ARGUMENT"."""
        return self.code.name


class InvalidArgument(BinderyError):
    """INVALID_ARGUMENT: an input or parameter was refused; the message names the input id."""


class NotFound(BinderyError):
    """NOT_FOUND: no such model, collection or item."""


class AlreadyExists(BinderyError):
    """ALREADY_EXISTS: a collection of that name exists."""


class PermissionDenied(BinderyError):
    """PERMISSION_DENIED: the API key may not do this (a read-only key writing a collection)."""


class Unauthenticated(BinderyError):
    """UNAUTHENTICATED: the server needs an API key and got none or an unknown one."""


class ResourceExhausted(BinderyError):
    """RESOURCE_EXHAUSTED: over a limit (rate, queue, request size); retrying later may work."""


class Unavailable(BinderyError):
    """UNAVAILABLE: the server cannot be reached or is shutting down."""


class DeadlineExceeded(BinderyError):
    """DEADLINE_EXCEEDED: the call took longer than its timeout."""


_BY_CODE: dict[grpc.StatusCode, type[BinderyError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
}


def error_for(code: grpc.StatusCode, message: str, request_index: int = 0) -> BinderyError:
    """The most specific BinderyError subclass for `code`."""
    return _BY_CODE.get(code, BinderyError)(code, message, request_index)


def from_rpc_error(error: grpc.RpcError, request_index: int = 0) -> BinderyError:
    """Converts a grpc (or grpc.aio) RpcError into a BinderyError."""
    code: grpc.StatusCode | None = error.code() if hasattr(error, "code") else None
    details = error.details() if hasattr(error, "details") else None
    return error_for(code or grpc.StatusCode.UNKNOWN, details or str(error), request_index)
