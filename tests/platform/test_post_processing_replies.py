"""The post-processing reply parser and document arrangement (pure)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from tests.platform.docx_factory import make_docx
from tests.platform.platform_client import DOCX

from docuhooks.delivery.transport import ErrorClass, TransportResult
from docuhooks.platform.postprocessing.replies import Mode, ReturnedDocument, arrange, judge_reply

PDF = b"%PDF-1.7\n%%EOF\n"
LETTER = "6f1c2a9e-8d3b-4c5e-9f00-1a2b3c4d5e6f"


def item(**fields: Any) -> dict[str, Any]:
    base = {
        "action": "add",
        "name": "Receipt",
        "fileName": "receipt.pdf",
        "contentType": "application/pdf",
        "content": base64.b64encode(PDF).decode(),
    }
    return {**base, **fields}


def reply(*items: dict[str, Any], status: int = 200) -> TransportResult:
    return TransportResult.response(status, json.dumps({"documents": list(items)}).encode())


def test_202_is_the_callback_mode_and_an_empty_list_keeps_everything() -> None:
    assert judge_reply(TransportResult.response(202), [LETTER]).mode is Mode.CALLBACK
    kept = judge_reply(reply(), [LETTER])
    assert (kept.mode, kept.documents, kept.succeeded) == (Mode.INLINE, (), True)


def test_documents_are_decoded_and_checked() -> None:
    docx = make_docx(["Signed"])
    judged = judge_reply(
        reply(
            item(
                action="replace",
                id=LETTER.upper(),
                contentType=DOCX,
                fileName="a/b.docx",
                content=base64.b64encode(docx).decode(),
            ),
            item(order=0),
        ),
        [LETTER],
    )
    assert judged.succeeded, judged.error
    replaced, added = judged.documents
    assert (replaced.id, replaced.file_name, replaced.content) == (LETTER, "b.docx", docx)
    assert (added.id, added.order, added.content) == (None, 0, PDF)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (item(action="delete"), '"action" must be "replace" or "add"'),
        (item(name=""), '"name" must be a non-empty string'),
        (item(content="not base64!"), '"content" is not base64'),
        (item(order=True), '"order" must be a whole number'),
        (item(order=-1), '"order" must be a whole number'),
        (item(action="replace"), '"replace" needs the "id"'),
        (item(action="replace", id="0" * 36), "has no document"),
        (item(id=LETTER), 'leave "id" out'),
        (item(content=base64.b64encode(b"<html>").decode()), "does not start %PDF"),
        (item(contentType=DOCX, fileName="x.docx"), "Content-Type is DOCX"),
        (item(contentType="not a type"), "is not a media type"),
        ("a string", "must be an object"),
    ],
)
def test_one_bad_document_refuses_the_reply(bad: Any, message: str) -> None:
    judged = judge_reply(reply(item(), bad), [LETTER])
    assert (judged.mode, judged.error_class) == (None, ErrorClass.INVALID_RESPONSE)
    assert judged.error is not None and "documents[1]" in judged.error and message in judged.error
    assert judged.outcome.error == judged.error and not judged.outcome.succeeded


def test_replacing_one_document_twice_is_refused() -> None:
    twice = item(action="replace", id=LETTER)
    judged = judge_reply(reply(twice, twice), [LETTER])
    assert judged.error is not None and "replaced twice" in judged.error


@pytest.mark.parametrize(
    ("result", "message"),
    [
        (TransportResult.response(200, b""), "is empty"),
        (TransportResult.response(200, b"<xml/>"), "not JSON"),
        (TransportResult.response(200, b'{"files": []}'), 'no "documents" list'),
        (TransportResult.response(204), "HTTP 204"),
        (TransportResult.response(500, b"boom"), "500"),
        (TransportResult(200, body=b"{", body_truncated=True), "larger than 160 MiB"),
        (TransportResult.failure(ErrorClass.TIMEOUT, "no reply in 60 s"), "no reply in 60 s"),
    ],
)
def test_replies_that_are_not_answers(result: TransportResult, message: str) -> None:
    judged = judge_reply(result, [LETTER])
    assert not judged.succeeded and judged.error is not None and message in judged.error


def returned(id: str | None = None, order: int | None = None) -> ReturnedDocument:
    return ReturnedDocument(
        "replace" if id else "add", "n", "n.pdf", "application/pdf", PDF, id, order
    )


def test_arrange_applies_documents_in_the_order_given() -> None:
    cover, appendix, last = returned(order=0), returned(), returned(order=99)
    assert arrange(["a", "b"], [appendix, cover, last]) == [cover, "a", "b", appendix, last]
    # A replace keeps its place, unless it gives an order, which moves it there.
    assert arrange(["a", "b", "c"], [returned("b")]) == ["a", "b", "c"]
    assert arrange(["a", "b", "c"], [returned("c", order=0)]) == ["c", "a", "b"]


def test_a_reply_of_very_many_documents_is_refused_while_it_is_judged() -> None:
    """20,000 tiny added documents are 2 MiB of JSON. Judged in the worker, each would then
    be arranged (`order: 0` moves every other, quadratically) and written in the settling
    transaction on the event loop: 400,000 of them held the loop for over 30 seconds. Such
    a reply is refused in the worker, and the documents are kept."""
    tiny = item(contentType="text/plain", fileName="a.txt", content="YQ==", order=0)
    judged = judge_reply(reply(*[tiny] * 20_000), [LETTER])
    assert not judged.succeeded
    assert judged.error_class is ErrorClass.INVALID_RESPONSE
    assert judged.error is not None and "20000 documents" in judged.error


def test_a_reply_of_as_many_documents_as_the_limit_is_taken() -> None:
    from docuhooks.platform.postprocessing import replies

    tiny = item(contentType="text/plain", fileName="a.txt", content="YQ==")
    judged = judge_reply(reply(*[tiny] * replies.MAX_REPLY_DOCUMENTS), [LETTER])
    assert judged.succeeded, judged.error
    assert len(judged.documents) == replies.MAX_REPLY_DOCUMENTS


@pytest.mark.parametrize(
    "bad",
    [
        {"fileName": "f" * 1_000_000},
        {"fileName": "f" * 1_000_000, "contentType": "application/pdf", "content": "YQ=="},
        {"contentType": "x" * 1_000_000},
        {"action": "a" * 1_000_000},
        {"order": ["o" * 100] * 10_000},
    ],
)
def test_a_refusal_quotes_the_receiver_briefly(bad: dict[str, Any]) -> None:
    """The refusal is kept in the version's `postProcessing.error`, which every read of the
    version (and every page of its work item's versions) returns: a receiver's megabytes of
    file name or content type must not be copied into it whole."""
    judged = judge_reply(reply(*[item(**bad)] * 5), [LETTER])
    assert not judged.succeeded
    assert judged.error is not None and len(judged.error) <= 1000
