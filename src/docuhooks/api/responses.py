"""JSON responses written without FastAPI's response-model pass, for the routes a person
waits on.

Returning a dict from a route with a `response_model` makes FastAPI validate it against the
model, walk it with `jsonable_encoder` and then encode it with the standard library: a cost
that grows with every answer (docs/performance.md), on the path of the
interview call whose overhead is held to 2 ms. The interview service already builds exactly
the model's shape (the API tests check responses against it), so those routes hand their
dict to :class:`FastJSONResponse`, which writes the same bytes with orjson (UTC as `Z`, as
pydantic writes it). The `response_model` stays on the route for the OpenAPI document.

A body that holds a large answer set (megabytes, at the answer-set limits) is encoded in the
answer-parsing threads instead (`encoded_off_loop`), under the caller's site's share of
them (`answers.offload`), so encoding it does not hold every other request up.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response

from docuhooks.answers import off_loop

_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS


class FastJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content, option=_OPTIONS)
        except TypeError:
            # What orjson refuses (an integer past 64 bits): FastAPI's own way.
            return super().render(jsonable_encoder(content))


def encode(content: Any) -> bytes:
    """`content` as `FastJSONResponse` writes it."""
    return bytes(FastJSONResponse(content).body)


def answers_size(answers: Any) -> int:
    """About how many bytes stored answers (canonical answer JSON) encode to: 100 an answer
    is generous enough that a large set is encoded in the threads."""
    entries = answers.get("answers") if isinstance(answers, dict) else None
    return 100 * len(entries) if isinstance(entries, list) else 0


async def encoded_off_loop(
    content: Any, *, size: int, threads: int, site: str, status_code: int = 200
) -> Response:
    """`content` as JSON, encoded in the answer-parsing threads when `size` (about the
    bytes it encodes to) is large, else right here."""
    body = await off_loop(size, threads, encode, content, site=site)
    return Response(body, status_code=status_code, media_type="application/json")
