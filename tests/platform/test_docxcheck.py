"""The DOCX limits: archives are refused from their zip directory before anything expands
them, and a directory that lies is caught by counting what really comes out."""

from __future__ import annotations

import io
import zipfile

import pytest
from tests.platform.docx_factory import standard_template
from tests.platform.hostile_docx import (
    CONTENT_TYPES,
    archive,
    document_bomb,
    lying_directory,
    many_entries,
)

from docuhooks.platform.docxcheck import DocxError, DocxLimitExceeded, DocxLimits, verify_docx
from docuhooks.platform.templates import TemplateError, check_docx, inspect_template

MiB = 1024 * 1024


def test_a_real_docx_passes_and_lists_its_entries() -> None:
    names = verify_docx(standard_template(), DocxLimits())
    assert {"[Content_Types].xml", "word/document.xml"} <= names


def test_an_entry_larger_than_the_limit_is_refused_from_the_directory() -> None:
    bomb = document_bomb(40 * MiB)
    assert len(bomb) < 200 * 1024
    with pytest.raises(DocxLimitExceeded) as refused:
        verify_docx(bomb, DocxLimits(max_compression_ratio=10_000))
    assert refused.value.code == "docx_too_large_uncompressed"
    assert refused.value.status == 413
    assert "docx_max_entry_bytes" in str(refused.value)


def test_the_total_is_limited_as_well_as_each_entry() -> None:
    entries = {"[Content_Types].xml": CONTENT_TYPES}
    entries.update({f"word/part{i}.xml": b" " * (2 * MiB) for i in range(3)})
    limits = DocxLimits(max_total_bytes=5 * MiB, max_compression_ratio=10_000)
    with pytest.raises(DocxLimitExceeded) as refused:
        verify_docx(archive(entries), limits)
    assert refused.value.code == "docx_too_large_uncompressed"
    assert "docx_max_total_bytes" in str(refused.value)


def test_an_entry_that_expands_too_many_times_is_refused() -> None:
    with pytest.raises(DocxLimitExceeded) as refused:
        verify_docx(document_bomb(4 * MiB), DocxLimits())
    assert refused.value.code == "docx_compression_ratio"
    assert refused.value.status == 422


def test_a_small_entry_may_compress_well() -> None:
    # Under the 1 MiB floor the ratio is not held against it.
    verify_docx(document_bomb(MiB // 2), DocxLimits(max_compression_ratio=2))


def test_too_many_entries_are_refused() -> None:
    with pytest.raises(DocxLimitExceeded) as refused:
        verify_docx(many_entries(60), DocxLimits(max_entries=50))
    assert refused.value.code == "docx_too_many_entries"


def test_a_directory_that_understates_a_size_is_caught_while_inflating() -> None:
    liar = lying_directory(real_bytes=3 * MiB, declared_bytes=2000)
    with zipfile.ZipFile(io.BytesIO(liar)) as zf:
        assert zf.getinfo("word/document.xml").file_size == 2000
    with pytest.raises(DocxLimitExceeded) as refused:
        verify_docx(liar, DocxLimits())
    assert refused.value.code == "docx_size_mismatch"
    assert refused.value.status == 422


def test_reading_the_directory_only_does_not_inflate() -> None:
    # What `check_content` does for bytes the render pool has already checked in full.
    liar = lying_directory(real_bytes=3 * MiB, declared_bytes=2000)
    assert "word/document.xml" in verify_docx(liar, None, inflate=False)


@pytest.mark.parametrize(
    "data",
    [b"", b"PK\x05\x06", b"%PDF-1.7", b"PK\x03\x04" + b"\0" * 100, document_bomb(10)[:-30]],
)
def test_what_is_not_a_zip_is_a_docx_error(data: bytes) -> None:
    with pytest.raises(DocxError) as refused:
        verify_docx(data, DocxLimits())
    assert not isinstance(refused.value, DocxLimitExceeded)


def test_check_docx_keeps_limit_errors_and_names_the_rest() -> None:
    with pytest.raises(DocxLimitExceeded):
        check_docx(document_bomb(40 * MiB))
    with pytest.raises(TemplateError, match="not a zip"):
        check_docx(b"plain text")
    with pytest.raises(DocxLimitExceeded):
        inspect_template(document_bomb(40 * MiB))
