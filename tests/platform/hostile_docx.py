"""Hostile DOCX archives (zip bombs, a lying zip directory) and hostile templates, for the
render and DOCX-limit tests here and for the live-server suite in `tests/hostile`."""

from __future__ import annotations

import io
import struct
import zipfile

from tests.platform.docx_factory import make_docx

CONTENT_TYPES = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>'
)

#: Templates whose render a plain user can start, each with what it does.
LOOPING = "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}"
RANGE_OVERFLOW = "{% for i in range(100000000) %}x{% endfor %}"
RECURSION = "{% macro down(n) %}{{ down(n) }}{% endmacro %}{{ down(1) }}"
OUTPUT_BLOW_UP = "{{ Client_Name * Fee }}"


def template(text: str) -> bytes:
    return make_docx([text])


def archive(entries: dict[str, bytes], *, stored: bool = False) -> bytes:
    out = io.BytesIO()
    method = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(out, "w", method) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return out.getvalue()


def document_bomb(expanded_bytes: int) -> bytes:
    """A DOCX whose `word/document.xml` is `expanded_bytes` of whitespace (a few hundred KB
    compressed for 100 MB)."""
    return archive(
        {"[Content_Types].xml": CONTENT_TYPES, "word/document.xml": b" " * expanded_bytes}
    )


def many_entries(count: int) -> bytes:
    entries = {"[Content_Types].xml": CONTENT_TYPES, "word/document.xml": b"<w:document/>"}
    entries.update({f"word/media/{i}.bin": b"" for i in range(count)})
    return archive(entries)


def lying_directory(real_bytes: int, declared_bytes: int) -> bytes:
    """A DOCX whose `word/document.xml` expands to `real_bytes`, while both its central
    directory entry and its local header say `declared_bytes`."""
    data = bytearray(document_bomb(real_bytes))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        info = zf.getinfo("word/document.xml")
    # Local header: the uncompressed size is at offset 22.
    struct.pack_into("<L", data, info.header_offset + 22, declared_bytes)
    central = data.find(b"PK\x01\x02")
    while central >= 0:
        name_length = struct.unpack_from("<H", data, central + 28)[0]
        if data[central + 46 : central + 46 + name_length] == b"word/document.xml":
            # Central directory entry: the uncompressed size is at offset 24.
            struct.pack_into("<L", data, central + 24, declared_bytes)
            return bytes(data)
        central = data.find(b"PK\x01\x02", central + 4)
    raise AssertionError("no central directory entry for word/document.xml")


def directory_only(count: int) -> bytes:
    """A "zip" of nothing but `count` bare central-directory records (1-byte names, no local
    headers, no data), whose end record claims none: 47 bytes an entry, so 100,000 entries
    fit in 4.7 MB. Whoever walks the directory without an entry limit builds `count`
    entries before noticing anything wrong."""
    record = struct.Struct("<4s6H3L5H2L")
    one = record.pack(b"PK\x01\x02", 20, 20, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0) + b"a"
    directory = one * count
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0, 0, len(directory), 0, 0)
    return directory + end
