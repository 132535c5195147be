"""Hypothesis strategies for canonical answer JSON, shared by the answer-set property tests."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

TYPES = ("text", "number", "date", "truefalse", "multiplechoice")

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
