"""HotDocs answer XML (`<AnswerSet version="1.1">`), read and written.

Reading rules (the writer, shared with the receiver SDK, produces exactly these):
- The XML comes from outside: it is parsed with defusedxml and any DTD is refused, so no
  entity expansion ("billion laughs") and no external entity or DTD is ever fetched.
- Encodings: UTF-8 and UTF-16 (told by a byte order mark or the declaration), and US-ASCII
  and ISO-8859-1 when declared. Any other declared encoding is refused by name before the
  parser sees the bytes: what HotDocs writes is UTF-8 or UTF-16, and every other codec is
  one more decoder running on a stranger's bytes.
- `TextValue` and `SelValue` keep their text exactly, white space included (CDATA is just
  text). `NumValue`, `DateValue` and `TFValue` are trimmed first.
- `NumValue`: plain decimal (`1500`, `-3`, `12.5`, `.5`, `1e3`); whole numbers become `int`
  (`1500.00` → 1500), others `float` (`12.5` → 12.5). Thousands separators are refused.
- `DateValue`: day/month/year (`29/11/2026`, `1/2/2026`); the year has four digits.
- `TFValue`: `true` or `false`, any case.
- `unans="true"` on any value element means unanswered, whatever it contains. An empty
  `NumValue`, `DateValue` or `TFValue` is unanswered too; an empty `TextValue` is `""`.
- `RptValue` nests up to four levels; an empty one is a repeat with no iterations, which is
  unanswered (see `docuhooks.answers.model`). Every value of one answer has one type.
- Anything else (an unknown element, text between elements, a missing `name`, the same
  name twice) is an `AnswerSetError` naming the answer and element.
"""

from __future__ import annotations

import codecs
import re
import xml.etree.ElementTree as ElementTree
from datetime import date

import defusedxml
import defusedxml.ElementTree as SafeElementTree

from docuhooks.answers.errors import AnswerSetError
from docuhooks.answers.limits import AnswerLimits, ValueCounter, check_answer_count
from docuhooks.answers.model import (
    MAX_REPEAT_DEPTH,
    Answer,
    AnswerSet,
    AnswerType,
    Selection,
    Value,
)
from docuhooks_receiver.answers import write_hotdocs_xml

_TYPE_OF_ELEMENT = {
    "TextValue": AnswerType.TEXT,
    "NumValue": AnswerType.NUMBER,
    "DateValue": AnswerType.DATE,
    "TFValue": AnswerType.TRUEFALSE,
    "MCValue": AnswerType.MULTIPLECHOICE,
}
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_DAY_MONTH_YEAR = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")
#: The declaration's encoding, in the ASCII-compatible bytes that can carry it.
_DECLARED_ENCODING = re.compile(
    rb"\A\s*<\?xml\s[^>]*?\bencoding\s*=\s*(?:\"([^\"]*)\"|'([^']*)')", re.DOTALL
)
#: Codec names (as `codecs.lookup` spells them) of the encodings answer XML may declare.
_SUPPORTED_ENCODINGS = frozenset(
    {"utf-8", "utf-16", "utf-16-le", "utf-16-be", "ascii", "iso8859-1", "latin-1"}
)
_UTF32_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
#: Bytes handed to the parser at a time: between two pieces the parsing thread lets others
#: run (a single large `feed` would hold the interpreter lock for the whole document).
_FEED_BYTES = 64 * 1024


def to_hotdocs_xml(answers: AnswerSet) -> bytes:
    """The answer set as HotDocs answer XML (UTF-8), readable by `parse_hotdocs_xml`."""
    return write_hotdocs_xml(answers.to_json())


def parse_hotdocs_xml(data: bytes | str, *, limits: AnswerLimits | None = None) -> AnswerSet:
    """Read HotDocs answer XML. Raises `AnswerSetError` for hostile or malformed input.

    With `limits`, the answers are counted before any is read and the values as they are
    read (`AnswerLimitExceeded` at the first one too many); the caller checks the rest
    (`check_answers`)."""
    root = _parse_safely(data)
    if _local(root.tag) != "AnswerSet":
        raise AnswerSetError(
            f"the root element is <{_local(root.tag)}>, expected <AnswerSet>", "AnswerSet"
        )
    version = root.get("version")
    if version is not None and not re.fullmatch(r"1(\.\d+)?", version.strip()):
        raise AnswerSetError(
            f"unsupported version {version!r}; this reads HotDocs answer sets version 1.x",
            "AnswerSet",
        )
    _refuse_text(root, "AnswerSet")
    counter = None
    if limits is not None:
        check_answer_count(len(root), limits.answers, "AnswerSet")
        counter = ValueCounter(limits)
    answers: list[Answer] = []
    seen: set[str] = set()
    for index, element in enumerate(root):
        where = f"AnswerSet/Answer[{index + 1}]"
        if _local(element.tag) != "Answer":
            raise AnswerSetError(
                f"unexpected element <{_local(element.tag)}>; only <Answer> belongs here",
                where,
            )
        name = (element.get("name") or "").strip()
        if not name:
            raise AnswerSetError("an <Answer> has no name attribute", where)
        where = f'Answer "{name}"'
        if name in seen:
            raise AnswerSetError("appears more than once", where)
        seen.add(name)
        if counter is not None:
            counter.next_answer()
        answers.append(_read_answer(name, element, where, counter))
    return AnswerSet(answers)


def _parse_safely(data: bytes | str) -> ElementTree.Element:
    if isinstance(data, str):
        # A str has already been decoded; its declaration's encoding no longer applies.
        data = re.sub(r"^\s*<\?xml[^>]*\?>", "", data, count=1).encode("utf-8")
    if not data.strip():
        raise AnswerSetError("the answer XML is empty", "body")
    _check_encoding(data)
    parser = SafeElementTree.DefusedXMLParser(
        target=ElementTree.TreeBuilder(),
        forbid_dtd=True,
        forbid_entities=True,
        forbid_external=True,
    )
    try:
        for start in range(0, len(data), _FEED_BYTES):
            parser.feed(data[start : start + _FEED_BYTES])
        root: ElementTree.Element = parser.close()
        return root
    except defusedxml.DTDForbidden:
        raise AnswerSetError(
            "a DTD (<!DOCTYPE>) is not allowed in answer XML; entities are never expanded",
            "body",
        ) from None
    except defusedxml.EntitiesForbidden as exc:
        raise AnswerSetError(
            f"entity declarations are not allowed in answer XML ({exc.name})", "body"
        ) from None
    except defusedxml.DefusedXmlException as exc:
        raise AnswerSetError(f"refused unsafe XML: {exc}", "body") from None
    except ElementTree.ParseError as exc:
        line, column = exc.position
        raise AnswerSetError(
            f"not well-formed XML: {exc.msg if hasattr(exc, 'msg') else exc}",
            f"line {line}, column {column + 1}",
        ) from None
    except (ValueError, LookupError, RecursionError) as exc:
        # The parser's own refusals that are not parse errors (an encoding it cannot
        # decode, say): still the sender's input, so still the sender's error.
        raise AnswerSetError(f"the answer XML cannot be read: {exc}", "body") from None


def _check_encoding(data: bytes) -> None:
    """Refuse, by name, an encoding answer XML may not use (see the module's docstring)."""
    if data.startswith(_UTF32_BOMS):
        raise _unsupported_encoding("UTF-32 (byte order mark)")
    if data.startswith(_UTF16_BOMS) or data[:2] in (b"\x00<", b"<\x00"):
        return  # UTF-16: the parser checks that a declaration agrees
    match = _DECLARED_ENCODING.match(data.removeprefix(codecs.BOM_UTF8), 0, 200)
    if match is None:
        return  # no declaration: UTF-8
    declared = (match.group(1) or match.group(2) or b"").decode("ascii", "replace").strip()
    try:
        codec = codecs.lookup(declared).name
    except (LookupError, ValueError):  # ValueError: a name with a NUL in it
        codec = ""
    if codec not in _SUPPORTED_ENCODINGS:
        raise _unsupported_encoding(repr(declared))


def _unsupported_encoding(declared: str) -> AnswerSetError:
    return AnswerSetError(
        f"the encoding {declared} is not supported; answer XML must be UTF-8 or UTF-16 "
        "(US-ASCII and ISO-8859-1 are read too)",
        "body",
    )


def _local(tag: object) -> str:
    # Tolerate a namespace on HotDocs elements: the names are what identify them.
    text = tag if isinstance(tag, str) else "?"
    return text.rsplit("}", 1)[-1]


def _refuse_text(element: ElementTree.Element, where: str) -> None:
    """Containers hold elements only; stray text means the file is not what we think."""
    pieces = [element.text] + [child.tail for child in element]
    for piece in pieces:
        if piece and piece.strip():
            raise AnswerSetError(
                f"unexpected text {piece.strip()[:40]!r} inside <{_local(element.tag)}>", where
            )


def _read_answer(
    name: str, element: ElementTree.Element, where: str, counter: ValueCounter | None
) -> Answer:
    _refuse_text(element, where)
    children = list(element)
    if len(children) != 1:
        raise AnswerSetError(
            f"an <Answer> holds exactly one value element, found {len(children)}", where
        )
    found_types: set[AnswerType] = set()
    value = _read_value(
        children[0], f"{where}/{_local(children[0].tag)}", found_types, 0, (where, counter)
    )
    if not found_types:
        raise AnswerSetError(
            "the repeat holds no value element, so its type cannot be known", where
        )
    if len(found_types) > 1:
        raise AnswerSetError(
            "values of different types in one answer: "
            + ", ".join(sorted(str(t) for t in found_types)),
            where,
        )
    try:
        return Answer(name, found_types.pop(), value)
    except AnswerSetError as exc:
        raise AnswerSetError(exc.reason, where) from None


def _read_value(
    element: ElementTree.Element,
    where: str,
    found_types: set[AnswerType],
    level: int,
    counting: tuple[str, ValueCounter | None],
) -> Value:
    tag = _local(element.tag)
    answer, counter = counting
    if counter is not None and (tag != "RptValue" or not len(element)):
        counter.add(answer)
    if tag == "RptValue":
        if level == MAX_REPEAT_DEPTH:
            raise AnswerSetError(f"repeats nest deeper than {MAX_REPEAT_DEPTH} levels", where)
        _refuse_text(element, where)
        items = tuple(
            _read_value(
                child, f"{where}[{i + 1}]/{_local(child.tag)}", found_types, level + 1, counting
            )
            for i, child in enumerate(element)
        )
        return items or None
    answer_type = _TYPE_OF_ELEMENT.get(tag)
    if answer_type is None:
        raise AnswerSetError(f"unknown value element <{tag}>", where)
    found_types.add(answer_type)
    unanswered = element.get("unans", "false").strip().lower()
    if unanswered not in ("true", "false"):
        raise AnswerSetError(f'unans must be "true" or "false", not {unanswered!r}', where)
    if unanswered == "true":
        return None
    if answer_type is AnswerType.MULTIPLECHOICE:
        return _read_selection(element, where)
    if len(element):
        raise AnswerSetError(f"<{tag}> holds text only, not <{_local(element[0].tag)}>", where)
    text = element.text or ""
    if answer_type is AnswerType.TEXT:
        return text
    text = text.strip()
    if not text:
        return None
    if answer_type is AnswerType.NUMBER:
        return _read_number(text, where)
    if answer_type is AnswerType.DATE:
        return _read_date(text, where)
    if text.lower() not in ("true", "false"):
        raise AnswerSetError(f"expected true or false, found {text!r}", where)
    return text.lower() == "true"


def _read_selection(element: ElementTree.Element, where: str) -> Selection:
    _refuse_text(element, where)
    options: list[str] = []
    for index, child in enumerate(element):
        if _local(child.tag) != "SelValue":
            raise AnswerSetError(
                f"<MCValue> holds <SelValue> elements only, not <{_local(child.tag)}>", where
            )
        if len(child):
            raise AnswerSetError("<SelValue> holds text only", f"{where}/SelValue[{index + 1}]")
        options.append(child.text or "")
    return Selection(tuple(options))


def _read_number(text: str, where: str) -> int | float:
    if not _NUMBER.fullmatch(text):
        raise AnswerSetError(f"not a number: {text[:40]!r} (expected e.g. 1500 or 12.5)", where)
    if re.fullmatch(r"[+-]?\d+", text):
        try:
            return int(text)
        except ValueError:  # more digits than Python converts (4300 by default)
            raise AnswerSetError(f"number out of range: {len(text)} digits", where) from None
    number = float(text)
    if number != number or number in (float("inf"), float("-inf")):
        raise AnswerSetError(f"number out of range: {text[:40]!r}", where)
    return int(number) if number.is_integer() else number


def _read_date(text: str, where: str) -> date:
    match = _DAY_MONTH_YEAR.fullmatch(text)
    if match is None:
        raise AnswerSetError(
            f"not a day/month/year date: {text!r} (expected e.g. 29/11/2026)", where
        )
    day, month, year = (int(part) for part in match.groups())
    try:
        return date(year, month, day)
    except ValueError as exc:
        raise AnswerSetError(f"not a real date: {text!r} ({exc})", where) from None
