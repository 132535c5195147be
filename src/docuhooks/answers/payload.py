"""Read an answer set from an HTTP body: a receiver's reply (SPEC §5.4) or an upload."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from docuhooks.answers.errors import AnswerSetError
from docuhooks.answers.hotdocs import parse_hotdocs_xml
from docuhooks.answers.jsonformat import ParseResult, parse_answer_json
from docuhooks.answers.model import VariableDef
from docuhooks.answers.validate import fit_answers

JSON_TYPES = frozenset({"application/json"})
XML_TYPES = frozenset({"application/xml", "text/xml"})


def parse_answer_payload(
    body: bytes, content_type: str, variables: Mapping[str, VariableDef] | None = None
) -> ParseResult:
    """Answer JSON or HotDocs answer XML, chosen by `content_type`, fitted to `variables`.

    `application/json` (or any `+json` type) is answer JSON, canonical or shorthand;
    `application/xml`, `text/xml` (or any `+xml` type) is HotDocs answer XML. A `charset`
    parameter decodes JSON; XML is decoded as its own declaration (or byte order mark) says,
    as XML parsers do. Raises `AnswerSetError` for an unknown type or a body that is not a
    valid answer set; answers that merely do not fit the template become warnings.
    """
    media_type, charset = _media_type(content_type)
    if media_type in JSON_TYPES or media_type.endswith("+json"):
        return parse_answer_json(_decode_json(body, charset), variables)
    if media_type in XML_TYPES or media_type.endswith("+xml"):
        answers = parse_hotdocs_xml(body)
        if variables is None:
            return ParseResult(answers)
        return ParseResult(*fit_answers(answers, variables))
    raise AnswerSetError(
        f"unsupported content type {content_type!r}; answer sets are application/json, "
        "application/xml or text/xml",
        "Content-Type",
    )


def _media_type(content_type: str) -> tuple[str, str | None]:
    media_type, *parameters = content_type.split(";")
    charset = None
    for parameter in parameters:
        key, _, value = parameter.partition("=")
        if key.strip().lower() == "charset":
            charset = value.strip().strip('"') or None
    return media_type.strip().lower(), charset


def _decode_json(body: bytes, charset: str | None) -> Any:
    if not body.strip():
        raise AnswerSetError("the answer JSON is empty", "body")
    try:
        text: str | bytes = body.decode(charset) if charset else body
    except LookupError:
        raise AnswerSetError(f"unknown charset {charset!r}", "Content-Type") from None
    except UnicodeDecodeError as exc:
        raise AnswerSetError(f"not valid {charset}: {exc.reason}", "body") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise AnswerSetError(
            f"not valid JSON: {exc.msg}", f"line {exc.lineno}, column {exc.colno}"
        ) from None
    except UnicodeDecodeError as exc:
        raise AnswerSetError(f"not valid UTF-8 JSON: {exc.reason}", "body") from None
    except (RecursionError, ValueError) as exc:
        # ValueError: e.g. an integer literal beyond Python's digit limit.
        raise AnswerSetError(f"answer JSON cannot be read: {exc}", "body") from None
