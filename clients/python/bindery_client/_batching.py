"""Splitting a call's entries into requests under the server's limits, keeping their order."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

MIB = 1024 * 1024
#: Entries per request: the server's default --max-items.
DEFAULT_MAX_ITEMS = 256
#: Bytes per request: under the server's default --max-message-bytes (64 MiB), leaving room for
#: the request's other fields and gRPC framing.
DEFAULT_MAX_REQUEST_BYTES = 60 * MIB
# A repeated message field costs its tag and length prefix besides the entry itself.
ENTRY_OVERHEAD = 16


@dataclass(frozen=True)
class BatchLimits:
    """How large one request may grow before the client starts another.

    Attributes:
        max_items: most entries (inputs, items or ids) per request; match the server's
            --max-items.
        max_request_bytes: most bytes of entries per request; keep it under the server's
            --max-message-bytes. An entry larger than this on its own is still sent, alone, and
            the server decides.
    """

    max_items: int = DEFAULT_MAX_ITEMS
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES

    def __post_init__(self) -> None:
        if self.max_items < 1:
            raise ValueError("max_items must be at least 1")
        if self.max_request_bytes < 1:
            raise ValueError("max_request_bytes must be at least 1")


def chunk(
    entries: Iterable[T],
    size_of: Callable[[T], int],
    max_items: int,
    max_bytes: int,
) -> Iterator[list[T]]:
    """Groups `entries`, in order, into lists of at most `max_items` entries and `max_bytes`
    bytes (an entry too large on its own gets a list of its own). Lazy: entries are pulled, and
    files read, only as the groups are consumed."""
    group: list[T] = []
    used = 0
    for entry in entries:
        size = size_of(entry) + ENTRY_OVERHEAD
        if group and (len(group) >= max_items or used + size > max_bytes):
            yield group
            group, used = [], 0
        group.append(entry)
        used += size
    if group:
        yield group


def message_size(message: object) -> int:
    """Serialized size of a protobuf message."""
    return message.ByteSize()  # type: ignore[attr-defined]
