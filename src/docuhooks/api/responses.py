"""JSON responses written without FastAPI's response-model pass, for the routes a person
waits on.

Returning a dict from a route with a `response_model` makes FastAPI validate it against the
model, walk it with `jsonable_encoder` and then encode it with the standard library: a cost
that grows with every answer (docs/performance.md), on the path of the
interview call whose overhead is held to 2 ms. The interview service already builds exactly
the model's shape (the API tests check responses against it), so those routes hand their
dict to :class:`FastJSONResponse`, which writes the same bytes with orjson (UTC as `Z`, as
pydantic writes it). The `response_model` stays on the route for the OpenAPI document.

Routes that show stored answers (a version, an interview) put them in the dict as the
stored JSON text, an `orjson.Fragment`, which orjson copies out as it is: megabytes of
answers are then neither decoded nor encoded on the event loop.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS


class FastJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content, option=_OPTIONS)
        except TypeError:
            # What orjson refuses (an integer past 64 bits): FastAPI's own way.
            return super().render(jsonable_encoder(content))
