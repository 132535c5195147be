"""The answer file of `docuhooks listen --answers`: what interview events are answered with.

Every format is checked with the receiver SDK's own writers when the file is read, so a bad
file fails at start-up rather than in the middle of someone's interview.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docuhooks_receiver import (
    CustomInterviewEvent,
    InterviewLoadEvent,
    shorthand,
    write_hotdocs_xml,
)

#: The key of the answer file entry used when no entry names the event.
ANY_EVENT = "*"


class ListenError(ValueError):
    """The listener's configuration cannot be used; the message says which part and why."""


@dataclass(frozen=True, slots=True)
class AnswerReply:
    """One answer set, ready to send, and its answers as (name, value) pairs for printing."""

    body: bytes
    content_type: str
    answers: tuple[tuple[str, Any], ...]


@dataclass(frozen=True, slots=True)
class Lookup:
    """Answers chosen by what the user typed: the event's current answer `key` picks a row."""

    key: str
    rows: Mapping[str, AnswerReply]


class AnswerFile:
    """What the listener answers interview events with, read from one file.

    - HotDocs answer XML, canonical answer JSON (`{"answers": [...]}`) or shorthand answer JSON
      (`{"Client Name": "Jane"}`): answered to every interview event.
    - A JSON object whose every value is an object: keyed by `InterviewLoadEvent`, by an
      interview event name, by `CustomInterviewEvent` (any name) or by `*` (anything else),
      each an answer set in JSON or a lookup `{"lookup": "<answer name>", "rows": {"<value the
      user typed>": <answer set>}}`. Shorthand values are never objects, so this is unambiguous.

    An event nothing matches (or whose lookup finds no row) is answered 204: no answers.
    """

    def __init__(self, entries: Mapping[str, AnswerReply | Lookup]) -> None:
        self.entries = dict(entries)

    @classmethod
    def load(cls, path: str | Path) -> AnswerFile:
        try:
            content = Path(path).read_bytes()
        except OSError as exc:
            raise ListenError(f"answers file {path}: {exc.strerror or exc}") from None
        return cls.parse(content, where=f"answers file {path}")

    @classmethod
    def parse(cls, content: bytes, *, where: str = "answers") -> AnswerFile:
        if content.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
            return cls({ANY_EVENT: _xml_reply(content, where)})
        try:
            data = json.loads(content)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ListenError(f"{where}: neither HotDocs answer XML nor JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ListenError(f"{where}: expected a JSON object, got {type(data).__name__}")
        if data and "answers" not in data and all(isinstance(v, dict) for v in data.values()):
            return cls({key: _entry(value, f"{where}, {key!r}") for key, value in data.items()})
        return cls({ANY_EVENT: _json_reply(data, where)})

    def reply_to(self, event: InterviewLoadEvent | CustomInterviewEvent) -> AnswerReply | None:
        if isinstance(event, CustomInterviewEvent):
            keys = [event.interview_event_name, "CustomInterviewEvent", ANY_EVENT]
        else:
            keys = ["InterviewLoadEvent", ANY_EVENT]
        entry = next((self.entries[k] for k in keys if k in self.entries), None)
        if isinstance(entry, Lookup):
            # Only a CustomInterviewEvent carries the interview's answers to look up on.
            answers = event.answers if isinstance(event, CustomInterviewEvent) else {}
            typed = _answer_value(answers, entry.key)
            return None if typed is None else entry.rows.get(_lookup_text(typed))
        return entry


def _entry(value: dict[str, Any], where: str) -> AnswerReply | Lookup:
    if "lookup" not in value:
        return _json_reply(value, where)
    key, rows = value.get("lookup"), value.get("rows")
    if not isinstance(key, str) or not key or not isinstance(rows, dict):
        raise ListenError(
            f'{where}: a lookup is {{"lookup": "<answer name>", "rows": {{"<value>": answers}}}}'
        )
    replies = {}
    for typed, answers in rows.items():
        if not isinstance(answers, dict):
            raise ListenError(f"{where}, row {typed!r}: expected answer JSON, an object")
        replies[typed] = _json_reply(answers, f"{where}, row {typed!r}")
    return Lookup(key, replies)


def _json_reply(answer_set: dict[str, Any], where: str) -> AnswerReply:
    """Checked with the SDK's own writers, so a bad file fails at start-up, not mid-interview."""
    try:
        if isinstance(answer_set.get("answers"), list):
            write_hotdocs_xml(answer_set)
            pairs = tuple((a["name"], a.get("value")) for a in answer_set["answers"])
        else:
            pairs = tuple(shorthand(answer_set).items())
    except (ValueError, TypeError, KeyError) as exc:
        raise ListenError(f"{where}: not an answer set: {exc}") from None
    body = json.dumps(answer_set, separators=(",", ":")).encode("utf-8")
    return AnswerReply(body, "application/json", pairs)


def _xml_reply(content: bytes, where: str) -> AnswerReply:
    try:
        root = ElementTree.fromstring(content)
    except ElementTree.ParseError as exc:
        raise ListenError(f"{where}: not well-formed XML: {exc}") from None
    if root.tag != "AnswerSet":
        raise ListenError(f"{where}: the root element is <{root.tag}>, expected <AnswerSet>")
    pairs = []
    for answer in root.iter("Answer"):
        leaves = ["".join(e.itertext()) for e in answer.iter() if len(e) == 0 and e is not answer]
        pairs.append((answer.get("name", ""), leaves[0] if len(leaves) == 1 else leaves))
    return AnswerReply(content, "application/xml", tuple(pairs))


def _answer_value(answer_json: Mapping[str, Any], name: str) -> Any:
    for answer in answer_json.get("answers") or []:
        if isinstance(answer, Mapping) and answer.get("name") == name:
            return answer.get("value")
    return None


def _lookup_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
