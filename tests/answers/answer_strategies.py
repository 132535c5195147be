"""Hypothesis strategies for canonical answer JSON, and hostile answer sets, shared by the
answer-set tests and the route tests that send them."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import strategies as st

TYPES = ("text", "number", "date", "truefalse", "multiplechoice")
JSON = "application/json"
XML = "application/xml"

# Every character XML 1.0 can carry, including the white space parsers like to normalise.
xml_characters = st.characters(
    blacklist_categories=("Cs", "Cc", "Cn"), blacklist_characters="\ufffe\uffff"
) | st.sampled_from("\t\n\r ")
xml_text = st.text(xml_characters, max_size=20)
names = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Cn", "Zl", "Zp")), min_size=1, max_size=20
).filter(lambda name: name == name.strip() and name.strip() != "")


def leaves(answer_type: str) -> st.SearchStrategy[Any]:
    """One answered value of `answer_type`, in canonical (already normalised) JSON form."""
    if answer_type == "text":
        return xml_text
    if answer_type == "number":
        return st.integers() | st.floats(allow_nan=False, allow_infinity=False).filter(
            lambda f: not f.is_integer()
        )
    if answer_type == "date":
        return st.dates().map(lambda d: d.isoformat())
    if answer_type == "truefalse":
        return st.booleans()
    return st.lists(st.text(xml_characters, min_size=1, max_size=10), unique=True, max_size=4)


def values(answer_type: str, depth: int) -> st.SearchStrategy[Any]:
    """A value repeated exactly `depth` levels deep; `None` may stand for any iteration."""
    if depth == 0:
        return st.none() | leaves(answer_type)
    return st.none() | st.lists(values(answer_type, depth - 1), min_size=1, max_size=3)


@st.composite
def answer_entries(draw: st.DrawFn, name: st.SearchStrategy[str] = names) -> dict[str, Any]:
    answer_type = draw(st.sampled_from(TYPES))
    depth = draw(st.integers(0, 4))
    return {"name": draw(name), "type": answer_type, "value": draw(values(answer_type, depth))}


def canonical_json(name: st.SearchStrategy[str] = names) -> st.SearchStrategy[dict[str, Any]]:
    return st.lists(answer_entries(name), unique_by=lambda entry: entry["name"], max_size=6).map(
        lambda entries: {"answers": entries}
    )


# --- hostile answer sets ---------------------------------------------------------------------
# Each must be refused as the sender's error (a 4xx with a reason) wherever it is sent.

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;">]>
<AnswerSet><Answer name="Name"><TextValue>&lol2;</TextValue></Answer></AnswerSet>"""

HOSTILE: list[tuple[bytes, str]] = [
    (b'{"answers": [{"name": "N", "type": "number", "value": 1e400}]}', JSON),
    (b'{"answers": [{"name": "N", "type": "number", "value": -1e400}]}', JSON),
    (b'{"answers": [{"name": "N", "type": "number", "value": NaN}]}', JSON),
    (b'{"answers": [{"name": "N", "type": "number", "value": Infinity}]}', JSON),
    (b'{"answers": [{"name": "N", "type": "number", "value": ' + b"9" * 5000 + b"}]}", JSON),
    (b'{"Grid": ' + b"1" * 5000 + b"}", JSON),
    (b'{"answers": [{"name": "N", "type": "date", "value": "2026-02-30"}]}', JSON),
    (b'{"answers": [{"name": "N", "type": "date", "value": "9999-99-99"}]}', JSON),
    (b'{"answers": [{"name": "' + b"n" * 300 + b'", "type": "text", "value": "x"}]}', JSON),
    (b'{"answers": [{"name": "N", "type": "text", "value": "\\ud800"}]}', JSON),
    (b'{"answers": [{"name": "N", "type": "text", "value": "\\u0000"}]}', JSON),
    (b"[" * 200_000 + b"]" * 200_000, JSON),
    (b'{"answers": ' + b"[" * 200_000 + b"]" * 200_000 + b"}", JSON),
    (b'{"a": ' * 100_000 + b"1" + b"}" * 100_000, JSON),
    (b"\xff\xfe\xfd", JSON),
    (b"{}", "application/json; charset=utf-7"),
    (b"{}", "application/json; charset=rot13"),
    (b"\x00\x00\x00{", "application/json; charset=utf-32"),
    (BILLION_LAUGHS, XML),
    (b'<!DOCTYPE x SYSTEM "http://169.254.169.254/">\n<AnswerSet/>', XML),
    (b"<AnswerSet>" + b"<a>" * 100_000 + b"</a>" * 100_000 + b"</AnswerSet>", XML),
    (
        b'<AnswerSet><Answer name="N"><NumValue>'
        + b"9" * 5000
        + b"</NumValue></Answer></AnswerSet>",
        XML,
    ),
    (b'<AnswerSet><Answer name="N"><NumValue>1e400</NumValue></Answer></AnswerSet>', XML),
    (b'<AnswerSet><Answer name="N"><NumValue>NaN</NumValue></Answer></AnswerSet>', XML),
    (b'<AnswerSet><Answer name="N"><DateValue>31/02/2026</DateValue></Answer></AnswerSet>', XML),
    (b'<AnswerSet><Answer name="N"><DateValue>1/1/99999</DateValue></Answer></AnswerSet>', XML),
    (
        b'<AnswerSet><Answer name="'
        + b"n" * 300
        + b'"><TFValue>true</TFValue></Answer></AnswerSet>',
        XML,
    ),
    (b"<AnswerSet><Answer name='N'><TextValue>&#0;</TextValue></Answer></AnswerSet>", XML),
    (b"\xef\xbb\xbf\xff\xfe<AnswerSet/>", XML),
    (b"<AnswerSet>\xc3\x28</AnswerSet>", XML),
]


def hostile_variants(seed: int, count: int) -> list[tuple[bytes, str]]:
    """`count` broken answer sets, the same for the same seed: valid documents in both
    formats, then cut short, spliced with random bytes, given an unsupported encoding, or
    with a value swapped for something out of range. For route tests, where Hypothesis
    cannot drive an async client; `test_answer_limits` runs the same mutations under it."""
    rng = random.Random(seed)
    valid = [
        b'{"answers": [{"name": "Client Name", "type": "text", "value": "Jane"},'
        b' {"name": "Child Name", "type": "text", "value": ["Ann", null, "Bob"]},'
        b' {"name": "Fee", "type": "number", "value": 1500.5}]}',
        b'{"Client Name": "Jane", "Fee": 1500, "Start Date": "2026-12-01", "Colours": ["Red"]}',
        b'<?xml version="1.0" encoding="UTF-8"?><AnswerSet version="1.1">'
        b'<Answer name="Client Name"><TextValue>Jane</TextValue></Answer>'
        b'<Answer name="Child Name"><RptValue><TextValue>Ann</TextValue></RptValue></Answer>'
        b'<Answer name="Start Date"><DateValue>1/12/2026</DateValue></Answer></AnswerSet>',
    ]
    swaps = [b"1e400", b"9" * 5000, b"NaN", b"-Infinity", b'"2026-02-30"', b"[" * 3000]
    encodings = [b"UTF-7", b"UTF-32", b"Shift_JIS", b"EUC-JP", b"x-unknown", b"utf-16"]
    variants: list[tuple[bytes, str]] = []
    for _ in range(count):
        body = rng.choice(valid)
        content_type = XML if body.startswith(b"<") else JSON
        how = rng.choice(["cut", "splice", "encoding", "swap"])
        if how == "cut":
            body = body[: rng.randrange(len(body))]
        elif how == "splice":
            at = rng.randrange(len(body) + 1)
            body = body[:at] + rng.randbytes(rng.randint(1, 12)) + body[at:]
        elif how == "encoding" and content_type == XML:
            body = body.replace(b"UTF-8", rng.choice(encodings))
        else:
            for old in (b"1500.5", b"1500", b'"Jane"', b"Jane", b"1/12/2026"):
                if old in body:
                    body = body.replace(old, rng.choice(swaps), 1)
                    break
        variants.append((body, content_type))
    return variants
