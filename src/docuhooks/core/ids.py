"""Identifiers for the rows docuhooks writes at volume: time-ordered UUIDs (version 7).

Events, deliveries and attempts are written by the million and read back mostly in the order
they were written: a worker drains deliveries oldest first and settles them in that order. A
random (version 4) key scatters each insert and each settle across the whole of the table's
primary-key index and every index that holds the key, so once those indexes outgrow the
database's page cache nearly every write reads a page from disk and a large backlog drains
ever slower. A version 7 UUID starts with the time in milliseconds: rows written together
sit together in every index that holds their id, and the pages being written are the ones
already in the cache.

They are UUIDs like any other (RFC 9562 §5.7; 74 random bits after the time), so nothing
that reads them changes; their text sorts as their time does. An id does tell when its
object was created, to the millisecond, which the object's own `createdAt` says anyway.
"""

from __future__ import annotations

import os
import threading
import time

__all__ = ["random_bytes", "uuid7"]

_VERSION_7 = 0x7 << 76
_VARIANT_RFC = 0b10 << 62
_RAND_B = (1 << 62) - 1


class _RandomBytes:
    """The operating system's random bytes, fetched a page at a time: every delivery needs
    four fresh random values (its JWT's jti, its trace ids, its attempt's id), and one
    ``getrandom`` call per value cost more than the rest of their handling. Bytes are
    handed out once each, under a lock, so two threads never share a value. For
    identifiers, never for secrets (those come from `secrets`)."""

    _PAGE = 4096

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Start afresh; a forked child does this, so it never hands out its parent's bytes
        (and never waits on a lock some other thread of the parent held)."""
        self._lock = threading.Lock()
        self._buffer = b""
        self._offset = 0

    def __call__(self, count: int) -> bytes:
        with self._lock:
            if self._offset + count > len(self._buffer):
                self._buffer = os.urandom(max(self._PAGE, count))
                self._offset = 0
            start = self._offset
            self._offset = start + count
            return self._buffer[start : start + count]


random_bytes = _RandomBytes()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=random_bytes.reset)


def uuid7() -> str:
    """A new version 7 UUID in canonical text form (lower-case, hyphenated)."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(random_bytes(10), "big")  # 80 bits: 62 for rand_b, 12 for rand_a
    value = (
        (millis & 0xFFFF_FFFF_FFFF) << 80
        | _VERSION_7
        | ((rand >> 62) & 0xFFF) << 64
        | _VARIANT_RFC
        | rand & _RAND_B
    )
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
