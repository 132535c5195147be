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
import time

__all__ = ["uuid7"]

_VERSION_7 = 0x7 << 76
_VARIANT_RFC = 0b10 << 62
_RAND_B = (1 << 62) - 1


def uuid7() -> str:
    """A new version 7 UUID in canonical text form (lower-case, hyphenated)."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")  # 80 bits: 62 for rand_b, 12 for rand_a
    value = (
        (millis & 0xFFFF_FFFF_FFFF) << 80
        | _VERSION_7
        | ((rand >> 62) & 0xFFF) << 64
        | _VARIANT_RFC
        | rand & _RAND_B
    )
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
