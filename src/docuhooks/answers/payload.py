"""Read an answer set from an HTTP body: a receiver's reply or an upload."""

from __future__ import annotations

import codecs
import json
from collections.abc import Mapping
from typing import Any

from docuhooks.answers.errors import AnswerSetError
from docuhooks.answers.hotdocs import parse_hotdocs_xml
from docuhooks.answers.jsonformat import ParseResult, is_canonical, parse_answer_json
from docuhooks.answers.limits import (
    DEFAULT_LIMITS,
    AnswerLimits,
    check_answer_count,
    check_answers,
    check_document_size,
    check_raw_json,
)
from docuhooks.answers.model import AnswerSet, AnswerType, VariableDef
from docuhooks.answers.validate import fit_answers

JSON_TYPES = frozenset({"application/json"})
#: Codec names (as `codecs.lookup` spells them) a JSON body's charset may name: the Unicode
#: encodings JSON allows, and the two single-byte ones clients still send.
_JSON_CHARSETS = frozenset(
    {
        "utf-8",
        "utf-16",
        "utf-16-le",
        "utf-16-be",
        "utf-32",
        "utf-32-le",
        "utf-32-be",
        "ascii",
        "iso8859-1",
        "latin-1",
    }
)
XML_TYPES = frozenset({"application/xml", "text/xml"})


def parse_answer_payload(
    body: bytes,
    content_type: str,
    variables: Mapping[str, VariableDef] | None = None,
    limits: AnswerLimits = DEFAULT_LIMITS,
) -> ParseResult:
    """Answer JSON or HotDocs answer XML, chosen by `content_type`, fitted to `variables`.

    `application/json` (or any `+json` type) is answer JSON, canonical or shorthand;
    `application/xml`, `text/xml` (or any `+xml` type) is HotDocs answer XML. A `charset`
    parameter decodes JSON; XML is decoded as its own declaration (or byte order mark) says,
    as XML parsers do. Raises `AnswerSetError` for an unknown type or a body that is not a
    valid answer set; answers that merely do not fit the template become warnings.

    `limits` are checked on the way: the body's size before anything reads it, the number of
    answers before each is read, and every other limit on what was read, before it is
    fitted to the template (`AnswerLimitExceeded`, a 413 or 422 naming the limit).
    """
    check_document_size(len(body), limits)
    media_type, charset = _media_type(content_type)
    if media_type in JSON_TYPES or media_type.endswith("+json"):
        return _parse_json(_decode_json(body, charset), variables, limits)
    if media_type in XML_TYPES or media_type.endswith("+xml"):
        answers = parse_hotdocs_xml(body, limits=limits)
        return _fitted(answers, variables, limits)
    raise AnswerSetError(
        f"unsupported content type {content_type!r}; answer sets are application/json, "
        "application/xml or text/xml",
        "Content-Type",
    )


def _parse_json(
    data: Any, variables: Mapping[str, VariableDef] | None, limits: AnswerLimits
) -> ParseResult:
    if is_canonical(data, variables):
        entries = data["answers"]
        check_answer_count(len(entries), limits.answers)
        check_raw_json(
            (
                (
                    _name_of(entry.get("name")),
                    entry.get("type") == "multiplechoice",
                    entry.get("value"),
                )
                for entry in entries
                if isinstance(entry, dict)
            ),
            limits,
        )
        return _fitted(parse_answer_json(data).answers, variables, limits)
    if isinstance(data, dict):
        check_answer_count(len(data), limits.answers)
        choices = {
            name
            for name, variable in (variables or {}).items()
            if variable.type is AnswerType.MULTIPLECHOICE
        }
        check_raw_json(
            ((_name_of(name), name in choices, raw) for name, raw in data.items()), limits
        )
    # Shorthand: typed by the template as it is read, so only what was kept can be measured;
    # what was dropped was bounded by the document's size.
    parsed = parse_answer_json(data, variables)
    check_answers(parsed.answers, limits)
    return parsed


def _name_of(name: object) -> str:
    # Only for naming an answer in a limit's error: names are checked when read.
    return name[:100] if isinstance(name, str) else "?"


def _fitted(
    answers: AnswerSet, variables: Mapping[str, VariableDef] | None, limits: AnswerLimits
) -> ParseResult:
    """Check `answers` as sent (a value too large is refused even if the template would
    drop it), then fit them to the template."""
    check_answers(answers, limits)
    if variables is None:
        return ParseResult(answers)
    return ParseResult(*fit_answers(answers, variables))


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
        codec = codecs.lookup(charset).name if charset else None
    except (LookupError, ValueError):  # ValueError: a name with a NUL in it
        raise AnswerSetError(f"unknown charset {charset!r}", "Content-Type") from None
    if codec is not None and codec not in _JSON_CHARSETS:
        raise AnswerSetError(
            f"the charset {charset!r} is not supported; answer JSON is UTF-8 (UTF-16, UTF-32, "
            "US-ASCII and ISO-8859-1 are read too)",
            "Content-Type",
        )
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
