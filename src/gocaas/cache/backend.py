"""The seam between cache tiers.

A tier stores two kinds of things, in the shape of the Bazel remote cache (and of any blob store): action
entries, scoped by namespace (action ID → output ID, size, put time), and objects, shared by all namespaces
and named by their SHA-256. `Store` (local disk) is the first implementation; a remote HTTP tier will be the
second, and a tiered backend will sit the local disk in front of it (read through, upload behind).

Not imported by the GOCACHEPROG program (typing costs start-up time); `Store` satisfies it structurally.
"""

from __future__ import annotations

from typing import BinaryIO, Protocol, runtime_checkable

from gocaas.cache.store import Entry


@runtime_checkable
class Backend(Protocol):
    """One cache tier. Implementations are thread-safe and may be shared by many processes.

    A miss is `None`, never an exception; exceptions (`CacheError`, OSError) mean the tier is broken or
    the request is malformed, and a caller may treat them as a miss.
    """

    def get(self, namespace: str, action_id: bytes) -> Entry | None:
        """The action entry, only if its object is present too (a hit is usable as is)."""
        ...

    def put(self, namespace: str, action_id: bytes, output_id: bytes, body: bytes | BinaryIO) -> Entry:
        """Store the object (refused unless body hashes to output_id), then the action entry."""
        ...

    def has(self, output_id: bytes) -> bool:
        """Whether the object is present (an uploader skips what the other side already has)."""
        ...

    def open(self, output_id: bytes) -> BinaryIO | None:
        """The object's body for reading, or None."""
        ...
