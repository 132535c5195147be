"""The parsed variables of stored templates, kept per (id, sha256): the ones in use stay."""

from collections import OrderedDict

import pytest

from docuhooks.answers import validate
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


def test_a_changed_template_is_read_again() -> None:
    before = template_variables("t-changed", "sha-a", _definitions("Old"))
    after = template_variables("t-changed", "sha-b", _definitions("New"))
    assert list(before) == ["Old"] and list(after) == ["New"]
    assert cached_template_variables("t-changed", "sha-c") is None
