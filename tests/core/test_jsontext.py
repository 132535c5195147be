"""jsontext writes what the standard library writes (compact, UTF-8), only faster."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from docuhooks.core.jsontext import dumpb, dumps

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(json_values)
def test_reads_back_as_the_standard_librarys_text_does(value: Any) -> None:
    standard = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    assert json.loads(dumps(value)) == json.loads(standard)
    assert dumpb(value) == dumps(value).encode("utf-8")


def test_what_orjson_refuses_is_written_by_the_standard_library() -> None:
    assert json.loads(dumps({"big": 2**70})) == {"big": 2**70}
    assert json.loads(dumps({"lone": "\ud800"})) == {"lone": "\ud800"}
    assert json.loads(dumps({1: "non-string key"})) == {"1": "non-string key"}


@dataclasses.dataclass
class Point:
    x: int


@pytest.mark.parametrize("value", [datetime.now(UTC), Point(1), {"nested": [Point(2)]}])
def test_what_the_standard_library_refuses_is_still_refused(value: object) -> None:
    with pytest.raises(TypeError):
        dumps(value)
