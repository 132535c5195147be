"""Keyset pagination: an opaque cursor naming the last row seen by (created_at, id)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

import sqlalchemy as sa

from docuhooks.errors import FieldError, ValidationFailed

T = TypeVar("T")

MAX_LIMIT = 200


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def encode_cursor(created_at: datetime, row_id: str) -> str:
    raw = f"{created_at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        stamp, row_id = base64.urlsafe_b64decode(padded.encode()).decode().split("|", 1)
        return datetime.fromisoformat(stamp), row_id
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationFailed.of(
            [FieldError("cursor", "is not a cursor this API returned")]
        ) from exc


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationFailed.of([FieldError("limit", f"must be between 1 and {MAX_LIMIT}")])
    return limit


def apply(
    query: sa.Select[Any],
    created: sa.ColumnElement[Any],
    row_id: sa.ColumnElement[Any],
    *,
    limit: int,
    cursor: str | None,
    newest_first: bool = True,
) -> sa.Select[Any]:
    """Order by (created, id) and start after `cursor`; fetches one extra row to see the end."""
    if cursor:
        key = decode_cursor(cursor)
        bound = sa.tuple_(created, row_id)
        query = query.where(bound < sa.tuple_(*key) if newest_first else bound > sa.tuple_(*key))
    if newest_first:
        query = query.order_by(created.desc(), row_id.desc())
    else:
        query = query.order_by(created.asc(), row_id.asc())
    return query.limit(check_limit(limit) + 1)


def page_of(rows: list[Any], limit: int, convert: Any) -> Page[Any]:
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = encode_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None
    return Page([convert(r) for r in rows], cursor)
