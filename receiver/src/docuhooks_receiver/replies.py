"""Replies to post-processing events: the inline result (a 200 reply).

Answer sets, the reply to interview events, are built with the helpers in `answers`.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any, Literal

#: The largest document the platform accepts back.
MAX_DOCUMENT_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ReturnedDocument:
    """One document in a post-processing reply: a replacement of `id`, or an added document."""

    action: Literal["replace", "add"]
    name: str
    file_name: str
    content_type: str
    content: bytes = field(repr=False)
    id: str | None = None
    order: int | None = None

    def to_dict(self) -> dict[str, Any]:
        item: dict[str, Any] = {}
        if self.id is not None:
            item["id"] = self.id
        item.update(
            name=self.name,
            fileName=self.file_name,
            contentType=self.content_type,
            content=base64.b64encode(self.content).decode("ascii"),
            action=self.action,
        )
        if self.order is not None:
            item["order"] = self.order
        return item


@dataclass(slots=True)
class PostProcessingResult:
    """Builds the 200 reply of inline post-processing.

    >>> result = PostProcessingResult()
    >>> result.replace("doc-id", "Lease", "lease.pdf", "application/pdf", b"%PDF-1.7 ...")
    PostProcessingResult(documents=[...])
    >>> result.to_dict()["documents"][0]["action"]
    'replace'

    Return `result.to_dict()` (or `result.to_json()` as `application/json`) with status 200.
    Documents the result does not mention are kept as they were.
    """

    documents: list[ReturnedDocument] = field(default_factory=list)

    def replace(
        self,
        id: str,
        name: str,
        file_name: str,
        content_type: str,
        content: bytes,
        order: int | None = None,
    ) -> PostProcessingResult:
        """Replace the assembled document `id` (from the event's documents) with `content`."""
        if not id:
            raise ValueError("replace needs the id of one of the event's documents")
        return self._append("replace", name, file_name, content_type, content, id, order)

    def add(
        self,
        name: str,
        file_name: str,
        content_type: str,
        content: bytes,
        order: int | None = None,
    ) -> PostProcessingResult:
        """Add a new document to the version, at `order` among the documents if given."""
        return self._append("add", name, file_name, content_type, content, None, order)

    def to_dict(self) -> dict[str, Any]:
        return {"documents": [document.to_dict() for document in self.documents]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    def _append(
        self,
        action: Literal["replace", "add"],
        name: str,
        file_name: str,
        content_type: str,
        content: bytes,
        id: str | None,
        order: int | None,
    ) -> PostProcessingResult:
        for label, value in (("name", name), ("file_name", file_name)):
            if not value or not value.strip():
                raise ValueError(f"{label} must not be empty")
        if "/" not in content_type:
            raise ValueError(
                f"content_type must be a media type such as application/pdf, got {content_type!r}"
            )
        if not isinstance(content, bytes | bytearray):
            raise TypeError(f"content must be bytes, got {type(content).__name__}")
        if len(content) > MAX_DOCUMENT_BYTES:
            raise ValueError(
                f"{file_name} is {len(content)} bytes; the platform accepts at most "
                f"{MAX_DOCUMENT_BYTES} bytes per document"
            )
        if order is not None and order < 0:
            raise ValueError(f"order must not be negative, got {order}")
        self.documents.append(
            ReturnedDocument(action, name, file_name, content_type, bytes(content), id, order)
        )
        return self
