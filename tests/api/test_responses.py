"""FastJSONResponse writes what FastAPI's own JSON response would, only faster."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from docuhooks.api.responses import FastJSONResponse


class Stamped(BaseModel):
    at: datetime


def test_datetimes_are_written_as_pydantic_writes_them() -> None:
    for moment in (
        datetime(2026, 11, 30, tzinfo=UTC),
        datetime(2026, 11, 30, 1, 2, 3, 45, tzinfo=UTC),
        datetime(2026, 11, 30, tzinfo=timezone(timedelta(hours=2))),
    ):
        fast = FastJSONResponse({"at": moment}).body
        assert fast == Stamped(at=moment).model_dump_json().encode()


def test_the_same_json_as_fastapis_response_for_text_numbers_and_nesting() -> None:
    content = {"name": "Müller – 契約 😀", "n": [1, 2.5, None, True], "nested": {"a": {"b": []}}}
    fast = FastJSONResponse(content)
    plain = JSONResponse(jsonable_encoder(content))
    assert fast.body == plain.body
    assert fast.headers["content-type"] == "application/json"


def test_what_orjson_refuses_falls_back_to_fastapis_encoding() -> None:
    content = {"big": 2**70}
    assert json.loads(bytes(FastJSONResponse(content).body)) == content
