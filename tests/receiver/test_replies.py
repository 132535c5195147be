import base64
import json

import pytest

from docuhooks_receiver import PostProcessingResult
from docuhooks_receiver.replies import MAX_DOCUMENT_BYTES


def test_replace_and_add_make_the_inline_reply_of_spec_5_4() -> None:
    result = (
        PostProcessingResult()
        .replace("doc-1", "Lease", "lease.pdf", "application/pdf", b"%PDF-1.7 signed")
        .add("Receipt", "receipt.pdf", "application/pdf", b"%PDF-1.7 receipt", order=2)
    )
    assert json.loads(result.to_json()) == {
        "documents": [
            {
                "id": "doc-1",
                "name": "Lease",
                "fileName": "lease.pdf",
                "contentType": "application/pdf",
                "content": base64.b64encode(b"%PDF-1.7 signed").decode(),
                "action": "replace",
            },
            {
                "name": "Receipt",
                "fileName": "receipt.pdf",
                "contentType": "application/pdf",
                "content": base64.b64encode(b"%PDF-1.7 receipt").decode(),
                "action": "add",
                "order": 2,
            },
        ]
    }


def test_an_empty_result_keeps_every_document() -> None:
    assert PostProcessingResult().to_dict() == {"documents": []}


def test_document_content_stays_out_of_repr() -> None:
    result = PostProcessingResult().add("A", "a.pdf", "application/pdf", b"%PDF-secret")
    assert "secret" not in repr(result)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda r: r.replace("", "A", "a.pdf", "application/pdf", b"x"),
            ValueError,
            "needs the id",
        ),
        (lambda r: r.add(" ", "a.pdf", "application/pdf", b"x"), ValueError, "name must not be"),
        (lambda r: r.add("A", "", "application/pdf", b"x"), ValueError, "file_name must not"),
        (lambda r: r.add("A", "a.pdf", "pdf", b"x"), ValueError, "media type"),
        (lambda r: r.add("A", "a.pdf", "application/pdf", "text"), TypeError, "must be bytes"),
        (lambda r: r.add("A", "a.pdf", "application/pdf", b"x", order=-1), ValueError, "order"),
        (
            lambda r: r.add("A", "a.pdf", "application/pdf", b"x" * (MAX_DOCUMENT_BYTES + 1)),
            ValueError,
            "at most",
        ),
    ],
)
def test_bad_documents_are_refused(call, error, message) -> None:
    result = PostProcessingResult()
    with pytest.raises(error, match=message):
        call(result)
    assert result.documents == []
