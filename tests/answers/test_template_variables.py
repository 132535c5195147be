"""The parsed variables of stored templates, kept per (id, sha256): the ones in use stay."""

import threading
from collections import OrderedDict
from typing import Any

import pytest

from docuhooks.answers import AnswerSetError, load_template_variables, validate
from docuhooks.answers.offload import INLINE_BYTES, definitions_size
from docuhooks.answers.validate import cached_template_variables, template_variables


def _definitions(name: str) -> list[dict[str, object]]:
    return [{"name": name, "type": "text", "repeatDepth": 0, "options": []}]


def test_the_least_recently_used_template_is_the_one_forgotten(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(validate, "_TEMPLATE_VARIABLES", OrderedDict())
    monkeypatch.setattr(validate, "_TEMPLATE_VARIABLES_KEPT", 2)
    first = template_variables("t1", "sha1", _definitions("A"))
    template_variables("t2", "sha2", _definitions("B"))
    # t1 is used again (as an interview open does), so t2 is now the oldest in use.
    assert cached_template_variables("t1", "sha1") is first
    template_variables("t3", "sha3", _definitions("C"))
    assert cached_template_variables("t2", "sha2") is None
    assert cached_template_variables("t1", "sha1") is first
    assert list(template_variables("t3", "sha3", None)) == ["C"]


def test_at_most_so_many_variables_are_kept_in_all(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every kept variable is an object each full garbage collection walks: templates are
    forgotten, least recently used first, to keep the variables under the bound; the newest
    is kept whatever its size."""
    monkeypatch.setattr(validate, "_TEMPLATE_VARIABLES", OrderedDict())
    monkeypatch.setattr(validate, "_TEMPLATE_VARIABLES_MOST", 5)

    def two(name: str) -> list[dict[str, object]]:
        return _definitions(f"{name} 1") + _definitions(f"{name} 2")

    first = template_variables("t1", "sha", two("A"))
    template_variables("t2", "sha", two("B"))
    assert cached_template_variables("t1", "sha") is first  # now t2 is the oldest in use
    template_variables("t3", "sha", two("C"))  # 6 variables: one template must go
    assert cached_template_variables("t2", "sha") is None
    assert cached_template_variables("t1", "sha") is first
    large = template_variables("t4", "sha", [_definitions(f"D{n}")[0] for n in range(6)])
    assert list(validate._TEMPLATE_VARIABLES) == [("t4", "sha")]
    assert cached_template_variables("t4", "sha") is large


def test_a_changed_template_is_read_again() -> None:
    before = template_variables("t-changed", "sha-a", _definitions("Old"))
    after = template_variables("t-changed", "sha-b", _definitions("New"))
    assert list(before) == ["Old"] and list(after) == ["New"]
    assert cached_template_variables("t-changed", "sha-c") is None


async def test_large_definitions_are_read_in_a_parsing_thread_and_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`load_template_variables` reads a small definition on the spot and a large one in
    the parsing threads; either is kept, so its next use reads nothing. A definition that
    cannot be read raises, and is not kept."""
    monkeypatch.setattr(validate, "_TEMPLATE_VARIABLES", OrderedDict())
    read_in: list[str] = []
    real = validate.variables_from_json

    def variables_from_json(raw: Any) -> Any:
        read_in.append(threading.current_thread().name)
        return real(raw)

    monkeypatch.setattr(validate, "variables_from_json", variables_from_json)
    large = [_definitions(f"V{i}")[0] for i in range(1_000)]
    assert definitions_size(large) > INLINE_BYTES >= definitions_size(large[:100])

    small = await load_template_variables("t1", "sha", large[:100], 2, site="s")
    first = await load_template_variables("t2", "sha", large, 2, site="s")
    again = await load_template_variables("t2", "sha", None, 2, site="s")
    assert again is first and len(first) == 1_000 and len(small) == 100
    assert read_in[0] == threading.current_thread().name
    assert read_in[1].startswith("answer-parse") and len(read_in) == 2

    with pytest.raises(AnswerSetError, match="declared more than once"):
        await load_template_variables("t3", "sha", large + large[:1], 2, site="s")
    assert cached_template_variables("t3", "sha") is None
