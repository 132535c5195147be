"""DOCX archives from users and receivers, checked before anything expands them.

A DOCX is a zip archive, and a zip's central directory says how large each entry becomes:
a 200 KB upload can declare (or, lying, hide) a gigabyte of XML. Everything that opens a
DOCX (template inspection, assembly, documents uploaded through the API or returned by
post-processing) first passes `verify_docx`, which

1. walks the central directory itself, stopping after `max_entries` entries, and refuses an
   archive with too many entries, an entry or a total declared larger than the limits, or
   an entry of more than `RATIO_FLOOR_BYTES` that expands more than `max_compression_ratio`
   times its compressed size;
2. inflates every entry from its local header, counting the bytes it really produces and
   discarding them as it goes (memory stays at one chunk), and refuses the archive as soon
   as an entry produces more than its directory declared or than the limits allow.

After both, the directory is known to be true, and `zipfile` (which trusts it) is safe to use.
The cost is bounded by the limits: at most `max_total_bytes` are ever inflated.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

_EOCD = b"PK\x05\x06"
_EOCD64_LOCATOR = b"PK\x06\x07"
_EOCD64 = b"PK\x06\x06"
_CENTRAL = b"PK\x01\x02"
_LOCAL = b"PK\x03\x04"
_EOCD_STRUCT = struct.Struct("<4s4H2LH")
_EOCD64_LOCATOR_STRUCT = struct.Struct("<4sLQL")
_EOCD64_STRUCT = struct.Struct("<4sQ2H2L4Q")
_CENTRAL_STRUCT = struct.Struct("<4s6H3L5H2L")
_LOCAL_STRUCT = struct.Struct("<4s5H3L2H")
_STORED = 0
_DEFLATED = 8
_CHUNK = 64 * 1024
#: Entries smaller than this are not held to the compression ratio: a small, very regular
#: XML part (styles, settings) can compress 200 times and harms no one.
RATIO_FLOOR_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class DocxLimits:
    """How far a DOCX may expand (`docx_*` settings)."""

    max_entries: int = 5000
    max_entry_bytes: int = 32 * 1024 * 1024
    max_total_bytes: int = 256 * 1024 * 1024
    max_compression_ratio: float = 100.0


_UNLIMITED = DocxLimits(2**62, 2**62, 2**62, float("inf"))


class DocxError(ValueError):
    """The bytes are not a DOCX anyone should open; the message says why."""

    code = "docx_invalid"
    #: 413 when the archive is refused for its size, 422 when it is malformed.
    status = 422


class DocxLimitExceeded(DocxError):
    """The archive is over one of the `DocxLimits`; `code` names which."""

    status = 413

    def __init__(self, code: str, message: str, *, status: int = 413) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


@dataclass(frozen=True, slots=True)
class _Entry:
    name: str
    method: int
    flags: int
    compressed: int
    uncompressed: int
    local_offset: int


def verify_docx(data: bytes, limits: DocxLimits | None, *, inflate: bool = True) -> frozenset[str]:
    """Check `data` against `limits` (see the module docstring); return the entry names.

    Raises `DocxLimitExceeded` naming the limit, or `DocxError` for an archive that is not
    a zip, is encrypted, or uses a compression Word never writes. `limits=None, inflate=False`
    only reads the directory: for bytes that already passed the full check elsewhere."""
    entries = _central_directory(data, limits or _UNLIMITED)
    _check_declared(entries, limits or _UNLIMITED)
    if inflate:
        for entry in entries:
            _inflated_size(data, entry)
    return frozenset(entry.name for entry in entries)


def _central_directory(data: bytes, limits: DocxLimits) -> list[_Entry]:
    eocd_at = data.rfind(_EOCD, max(0, len(data) - 22 - 0xFFFF))
    if eocd_at < 0 or len(data) - eocd_at < _EOCD_STRUCT.size:
        raise DocxError("not a DOCX: the file is not a zip archive")
    _, _, _, _, count, cd_size, cd_offset, _ = _EOCD_STRUCT.unpack_from(data, eocd_at)
    directory_end = eocd_at
    locator_at = eocd_at - _EOCD64_LOCATOR_STRUCT.size
    if locator_at >= 0 and data[locator_at : locator_at + 4] == _EOCD64_LOCATOR:
        record_at = locator_at - _EOCD64_STRUCT.size
        if record_at < 0 or data[record_at : record_at + 4] != _EOCD64:
            raise DocxError("not a DOCX: the zip64 directory record is missing")
        fields = _EOCD64_STRUCT.unpack_from(data, record_at)
        count, cd_size, cd_offset = fields[7], fields[8], fields[9]
        directory_end = record_at
    if count > limits.max_entries:
        raise _too_many(count, limits)
    # Bytes prepended to the archive shift every offset by the same amount (as zipfile does).
    shift = directory_end - cd_size - cd_offset
    position = cd_offset + shift
    if shift < 0 or position < 0:
        raise DocxError("not a DOCX: the zip directory is out of place")
    entries: list[_Entry] = []
    while position < directory_end:
        if len(entries) >= limits.max_entries:
            raise _too_many(len(entries) + 1, limits)
        entry, position = _central_entry(data, position, shift)
        entries.append(entry)
    return entries


def _too_many(count: int, limits: DocxLimits) -> DocxLimitExceeded:
    return DocxLimitExceeded(
        "docx_too_many_entries",
        f"the DOCX archive holds more than {limits.max_entries} entries ({count} or more); "
        "the limit is docx_max_entries",
    )


def _central_entry(data: bytes, position: int, shift: int) -> tuple[_Entry, int]:
    if data[position : position + 4] != _CENTRAL or position + _CENTRAL_STRUCT.size > len(data):
        raise DocxError("not a DOCX: the zip directory is damaged")
    fields = _CENTRAL_STRUCT.unpack_from(data, position)
    flags, method = fields[3], fields[4]
    compressed, uncompressed = fields[8], fields[9]
    name_length, extra_length, comment_length = fields[10], fields[11], fields[12]
    local_offset = fields[16]
    start = position + _CENTRAL_STRUCT.size
    name = data[start : start + name_length].decode("utf-8" if flags & 0x800 else "cp437")
    extra = data[start + name_length : start + name_length + extra_length]
    wide = [v == 0xFFFFFFFF for v in (uncompressed, compressed, local_offset)]
    if any(wide):
        uncompressed, compressed, local_offset = _zip64_sizes(
            extra, wide, (uncompressed, compressed, local_offset)
        )
    entry = _Entry(name, method, flags, compressed, uncompressed, local_offset + shift)
    return entry, start + name_length + extra_length + comment_length


def _zip64_sizes(
    extra: bytes, wide: list[bool], values: tuple[int, int, int]
) -> tuple[int, int, int]:
    """The 64-bit sizes and offset a zip64 extra field gives for the fields marked wide."""
    at = 0
    while at + 4 <= len(extra):
        kind, length = struct.unpack_from("<2H", extra, at)
        if kind == 1:
            body = extra[at + 4 : at + 4 + length]
            out = list(values)
            read = 0
            for index, is_wide in enumerate(wide):
                if is_wide:
                    if read + 8 > len(body):
                        raise DocxError("not a DOCX: a zip64 field is truncated")
                    out[index] = struct.unpack_from("<Q", body, read)[0]
                    read += 8
            return out[0], out[1], out[2]
        at += 4 + length
    raise DocxError("not a DOCX: a zip64 entry has no zip64 field")


def _check_declared(entries: list[_Entry], limits: DocxLimits) -> None:
    total = 0
    for entry in entries:
        if entry.flags & 0x1:
            raise DocxError(f"not a DOCX: entry {entry.name!r} is encrypted")
        if entry.method not in (_STORED, _DEFLATED):
            raise DocxError(
                f"not a DOCX: entry {entry.name!r} uses zip compression method {entry.method}"
            )
        if entry.uncompressed > limits.max_entry_bytes:
            raise _entry_too_large(entry.name, entry.uncompressed, limits)
        ratio = entry.uncompressed / max(entry.compressed, 1)
        if entry.uncompressed > RATIO_FLOOR_BYTES and ratio > limits.max_compression_ratio:
            raise DocxLimitExceeded(
                "docx_compression_ratio",
                f"entry {entry.name!r} of the DOCX expands {ratio:.0f} times "
                f"({entry.compressed} to {entry.uncompressed} bytes); the limit is "
                f"{limits.max_compression_ratio:g} (docx_max_compression_ratio)",
                status=422,
            )
        total += entry.uncompressed
        if total > limits.max_total_bytes:
            raise _total_too_large(limits)


def _entry_too_large(name: str, size: int, limits: DocxLimits) -> DocxLimitExceeded:
    return DocxLimitExceeded(
        "docx_too_large_uncompressed",
        f"entry {name!r} of the DOCX expands to {size} bytes or more; the limit is "
        f"{limits.max_entry_bytes} bytes per entry (docx_max_entry_bytes)",
    )


def _total_too_large(limits: DocxLimits) -> DocxLimitExceeded:
    return DocxLimitExceeded(
        "docx_too_large_uncompressed",
        f"the DOCX expands to more than {limits.max_total_bytes} bytes in all; that is the "
        "limit (docx_max_total_bytes)",
    )


def _inflated_size(data: bytes, entry: _Entry) -> int:
    """Inflate `entry`, counting, never holding more than one chunk; return its real size."""
    at = entry.local_offset
    if at < 0 or data[at : at + 4] != _LOCAL or at + _LOCAL_STRUCT.size > len(data):
        raise DocxError(f"not a DOCX: entry {entry.name!r} has no local header")
    fields = _LOCAL_STRUCT.unpack_from(data, at)
    start = at + _LOCAL_STRUCT.size + fields[9] + fields[10]
    compressed = data[start : start + entry.compressed]
    if len(compressed) != entry.compressed:
        raise DocxError(f"not a DOCX: entry {entry.name!r} is truncated")
    # The declared sizes passed the limits, so holding the entry to its declared size holds
    # it to the limits too.
    produced = len(compressed) if entry.method == _STORED else _count_inflated(entry, compressed)
    if produced > entry.uncompressed:
        raise _lying(entry)
    if produced != entry.uncompressed:
        raise DocxError(
            f"not a DOCX: entry {entry.name!r} holds {produced} bytes, its directory says "
            f"{entry.uncompressed}"
        )
    return produced


def _count_inflated(entry: _Entry, compressed: bytes) -> int:
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    produced = 0
    pending = memoryview(compressed)
    try:
        while pending and not inflater.eof:
            chunk = inflater.decompress(pending, _CHUNK)
            produced += len(chunk)
            if produced > entry.uncompressed:
                raise _lying(entry)
            pending = memoryview(inflater.unconsumed_tail)
            if not chunk and not pending:
                break
    except zlib.error as exc:
        raise DocxError(f"not a DOCX: entry {entry.name!r} is damaged ({exc})") from None
    return produced


def _lying(entry: _Entry) -> DocxLimitExceeded:
    return DocxLimitExceeded(
        "docx_size_mismatch",
        f"entry {entry.name!r} of the DOCX expands to more than the {entry.uncompressed} "
        "bytes its zip directory declares; the archive was refused unread",
        status=422,
    )
