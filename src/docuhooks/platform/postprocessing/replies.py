"""What a post-processing receiver's reply means, and where its documents go. No I/O here
but the render pool's; `postprocessing.calls` calls receivers and writes the results.

A reply is taken whole or not at all: one document that is not what its content type says,
or a `replace` of a document the version does not have, refuses the reply and the version
keeps the documents it was assembled with.

A reply can be 160 MiB of JSON whose documents are zip archives claiming anything; reading
it (`json.loads`, base64, the zip directories) takes long single calls that hold the
interpreter lock, and memory several times the reply. So a reply with a body is judged in a
render worker (`judge_in_pool`), never on the event loop nor in a server thread: the loop
only waits, the worker is held to the render time and memory limits, every returned DOCX is
checked there in full against the `docx_*` limits (its zip directory read no further than
`docx_max_entries` entries), and the job counts against the receiving site's share of the
workers, so a hostile receiver slows its own site only. Judging happens once, before the
settling transaction; inside it only the cheap `check_replaced` runs.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from docuhooks.delivery.attempt_log import clip
from docuhooks.delivery.transport import ErrorClass, TransportResult
from docuhooks.errors import DocuhooksError, LimitExceeded, ValidationFailed
from docuhooks.interview_hooks.replies import Outcome
from docuhooks.interview_hooks.warnings import Problem
from docuhooks.platform import documents
from docuhooks.platform.docxcheck import DocxLimits

if TYPE_CHECKING:
    from docuhooks.platform.renderjobs import RenderLimits
    from docuhooks.platform.renderpool import RenderPool

#: The largest inline reply read: room for two documents of the 50 MiB maximum, base64
#: encoded, and a few small ones. A receiver returning more uses the callback mode.
MAX_REPLY_BYTES = 160 * 1024 * 1024
#: The most documents one inline reply may return. Each is arranged and written in the
#: settling transaction, on the event loop: 160 MiB of JSON holds well over a million tiny
#: documents, and arranging 400,000 (`order: 0`, each moving every other) held the loop for
#: tens of seconds, then the database for as long writing them.
MAX_REPLY_DOCUMENTS = 1000
#: Errors named in one refusal; the rest are counted.
_MAX_ERRORS = 5
#: One named error is cut to this many characters: it may quote what the receiver sent (a
#: file name, a content type), and the refusal is kept in the version's record, which every
#: read of the version returns. The whole refusal is cut to `attempt_log.MAX_ERROR`.
_MAX_ERROR_CHARS = 180


class Mode(StrEnum):
    INLINE = "inline"
    CALLBACK = "callback"


@dataclass(frozen=True, slots=True)
class ReturnedDocument:
    """One checked document of an inline reply."""

    action: str
    name: str
    file_name: str
    content_type: str
    content: bytes = field(repr=False)
    id: str | None = None
    order: int | None = None

    def as_new(self) -> documents.NewDocument:
        return documents.NewDocument(self.name, self.file_name, self.content_type, self.content)


@dataclass(frozen=True, slots=True)
class Judged:
    """A receiver's reply, judged: the mode it chose and its documents, or why it failed."""

    mode: Mode | None
    documents: tuple[ReturnedDocument, ...] = ()
    error_class: ErrorClass | None = None
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.error_class is None

    @property
    def outcome(self) -> Outcome:
        """The call as the delivery log records it."""
        if self.error_class is None:
            return Outcome(None, ())
        message = self.error or str(self.error_class)
        return Outcome(None, (Problem(str(self.error_class), message),), self.error_class, message)


def _failed(error_class: ErrorClass, message: str) -> Judged:
    return Judged(None, (), error_class, clip(message))


def refused(message: str) -> Judged:
    """A reply refused whole (the documents are kept), for a reason found outside
    `judge_reply` (the render worker judging it went past a render limit)."""
    return _failed(
        ErrorClass.INVALID_RESPONSE, f"the reply was refused and the documents kept: {message}"
    )


async def judge_in_pool(
    pool: RenderPool,
    result: TransportResult,
    *,
    site_id: str,
    document_ids: Collection[str] | None = None,
) -> Judged:
    """`judge_reply`, in a render worker of `site_id`'s share when the reply has a body to
    read (see the module docstring); a reply the worker could not judge within the render
    limits is refused, naming the limit."""
    if (
        result.status != 200
        or result.error_class is not None
        or result.body_truncated
        or not result.body
    ):
        return judge_reply(result, document_ids)  # nothing to read
    ids = tuple(document_ids) if document_ids is not None else None
    try:
        judged: Judged = await pool.run(
            judge_reply_job, result, ids, site_id=site_id, field="documents"
        )
    except (LimitExceeded, ValidationFailed) as exc:
        # The pool words its limits for templates; say what was being done.
        details = "; ".join(d.message for d in exc.details) or exc.message
        return refused(f"it could not be read within the render limits ({exc.code}): {details}")
    return judged


def judge_reply_job(
    limits: RenderLimits, result: TransportResult, document_ids: Collection[str] | None
) -> Judged:
    """`judge_reply` as a render job (run in the worker), held to the `docx_*` limits."""
    return judge_reply(result, document_ids, limits.docx)


def judge_reply(
    result: TransportResult,
    document_ids: Collection[str] | None = None,
    docx_limits: DocxLimits | None = None,
) -> Judged:
    """What `result` means as a reply to a PostProcessingEvent.

    `document_ids` are the ids of the version's documents, which `replace` must name; None
    skips that check (the test event's documents do not exist, and a live reply is judged
    before its transaction: `check_replaced` there). Every returned DOCX is checked in full
    against `docx_limits` (default `DocxLimits()`). CPU-heavy on a large reply: call it
    through `judge_in_pool`.
    """
    if result.status is None or result.error_class is not None:
        return _failed(result.error_class or ErrorClass.CONNECT, result.error or "no response")
    if result.status == 202:
        return Judged(Mode.CALLBACK)
    if result.status != 200:
        return _failed(
            ErrorClass.INVALID_RESPONSE,
            f"HTTP {result.status}: a post-processing webhook answers 200 with documents, or "
            "202 to upload them and call completeUrl",
        )
    if result.body_truncated:
        return _failed(
            ErrorClass.INVALID_RESPONSE,
            f"the reply is larger than {MAX_REPLY_BYTES // 1024 // 1024} MiB; return fewer "
            "documents inline, or answer 202 and upload them through the REST API",
        )
    if not result.body.strip():
        return _failed(
            ErrorClass.INVALID_RESPONSE,
            'the 200 reply is empty; answer {"documents": []} to keep the documents',
        )
    try:
        body = json.loads(result.body)
    except (ValueError, UnicodeDecodeError):
        return _failed(ErrorClass.INVALID_RESPONSE, "the 200 reply is not JSON")
    items = body.get("documents") if isinstance(body, dict) else None
    if not isinstance(items, list):
        return _failed(ErrorClass.INVALID_RESPONSE, 'the 200 reply has no "documents" list')
    if len(items) > MAX_REPLY_DOCUMENTS:
        return _failed(
            ErrorClass.INVALID_RESPONSE,
            f"the reply was refused and the documents kept: it returns {len(items)} "
            f"documents; at most {MAX_REPLY_DOCUMENTS} are accepted in one reply",
        )
    known = {i.lower() for i in document_ids} if document_ids is not None else None
    limits = docx_limits or DocxLimits()
    returned: list[ReturnedDocument] = []
    errors: list[str] = []
    replaced: set[str] = set()
    for index, item in enumerate(items):
        try:
            document = _document(item, known, limits)
        except _Refused as exc:
            errors.append(f"documents[{index}]: {exc}")
            continue
        if document.id is not None:
            if document.id in replaced:
                errors.append(f"documents[{index}]: document {document.id} is replaced twice")
            replaced.add(document.id)
        returned.append(document)
    if errors:
        return _refused_for(errors)
    return Judged(Mode.INLINE, tuple(returned))


def check_replaced(judged: Judged, document_ids: Collection[str]) -> Judged:
    """`judged`, refused if a `replace` names a document the version does not have (cheap:
    for the settling transaction, which knows the version's documents)."""
    if not judged.succeeded:
        return judged
    known = {i.lower() for i in document_ids}
    errors = [
        f"documents[{index}]: the version has no document {document.id} to replace"
        for index, document in enumerate(judged.documents)
        if document.id is not None and document.id not in known
    ]
    return _refused_for(errors) if errors else judged


def _refused_for(errors: Sequence[str]) -> Judged:
    more = f" (and {len(errors) - _MAX_ERRORS} more)" if len(errors) > _MAX_ERRORS else ""
    return _failed(
        ErrorClass.INVALID_RESPONSE,
        "the reply was refused and the documents kept: "
        + "; ".join(_cut(error) for error in errors[:_MAX_ERRORS])
        + more,
    )


def _cut(error: str) -> str:
    return error if len(error) <= _MAX_ERROR_CHARS else error[: _MAX_ERROR_CHARS - 1] + "…"


class _Refused(ValueError):
    """One returned document that cannot be taken; the message says why."""


def _document(item: Any, known: set[str] | None, limits: DocxLimits) -> ReturnedDocument:
    if not isinstance(item, Mapping):
        raise _Refused("must be an object")
    action = item.get("action")
    if action not in ("replace", "add"):
        raise _Refused(f'"action" must be "replace" or "add", got {action!r}')
    texts = {}
    for key in ("name", "fileName", "contentType", "content"):
        value = item.get(key)
        if not isinstance(value, str) or not value.strip():
            raise _Refused(f'"{key}" must be a non-empty string')
        texts[key] = value
    order = item.get("order")
    if order is not None and (isinstance(order, bool) or not isinstance(order, int) or order < 0):
        raise _Refused(f'"order" must be a whole number from 0, got {order!r}')
    document_id = item.get("id")
    if action == "replace":
        if not isinstance(document_id, str) or not document_id:
            raise _Refused('"replace" needs the "id" of one of the event\'s documents')
        document_id = document_id.strip().lower()
        if known is not None and document_id not in known:
            raise _Refused(f"the version has no document {document_id} to replace")
    elif document_id is not None:
        raise _Refused('an added document gets a new id: leave "id" out, or use "replace"')
    try:
        content = base64.b64decode(texts["content"], validate=True)
    except (binascii.Error, ValueError):
        raise _Refused('"content" is not base64') from None
    try:
        name = texts["name"].strip()
        if len(name) > 255:
            raise _Refused('"name" may be at most 255 characters')
        file_name = documents.clean_file_name(texts["fileName"])
        content_type = documents.media_type(texts["contentType"])
        documents.check_content(content_type, content, limits)
    except DocuhooksError as exc:
        details = "; ".join(d.message for d in exc.details) or exc.message
        raise _Refused(f"{texts['fileName']}: {details}") from None
    return ReturnedDocument(
        action,
        name,
        file_name,
        content_type,
        content,
        document_id if action == "replace" else None,
        order,
    )


def arrange(
    current: Sequence[str], returned: Sequence[ReturnedDocument]
) -> list[str | ReturnedDocument]:
    """The version's documents after `returned` is applied, in assembled order: an existing
    document by its id, an added one as itself.

    Documents are applied in the order given: `add` goes in at `order` (default, or past the
    end: last) and moves the documents from there on one place later; `replace` keeps the
    document's place unless it gives an `order`, which moves it there.
    """
    arranged: list[str | ReturnedDocument] = list(current)
    for document in returned:
        entry: str | ReturnedDocument = document if document.id is None else document.id
        if document.id is not None:
            if document.order is None:
                continue
            arranged.remove(document.id)
        position = len(arranged) if document.order is None else min(document.order, len(arranged))
        arranged.insert(position, entry)
    return arranged
