"""Which fields, and which rows of each repeated one, an interview page shows: a page whose
size is bounded whatever the template (within the catalog's limits) and the answers (within
the answer-set limits).

Every template variable is one field, and a repeated one has a row per answer value. A
page of every row of every field was unbounded: a repeated multiple choice of 1,000 options
answered 10,000 times (both within the limits) was a page of over a gigabyte, 200 rows of
it already 23 MB and 1.7 s of rendering. So a page is laid out before it is built:

- each field is counted at the most bytes it can make (`measure`): its markup, and its
  name, options and answer as text, each character at the most an escaped one takes (5
  bytes: `'` becomes `&#39;`), with room for a message and a webhook's mark;
- a repeated field shows a window of its rows, at most `ROWS_SHOWN` and at most as many of
  its largest row as fit `FIELDS_BYTES`; its other rows are kept as they are when the page
  is saved (`interview_form.read_form`), and the person moves through them a window at a
  time, or to a row by number;
- the fields, in the template's order, fill a page until the next would pass
  `FIELDS_BYTES` (the next page starts there): a template of thousands of fields is
  several pages, and one of a few hundred a single page;
- a field too large to show at all (a multiple choice whose options alone pass
  `FIELDS_BYTES`) is named with the reason, and its answer is left as it is: it is changed
  with an answer file or through the API.

The rest of the page is bounded by the catalog's limits (500 event elements of 200
characters) and by what the page lists (`LISTED` warnings, each cut to `MESSAGE_CHARS`).
Together no page passes `PAGE_BYTES` (tests/ui/test_interview_page_bound.py renders the
worst cases).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from docuhooks.answers import VariableDef

KIB = 1024
MIB = 1024 * KIB

#: The most bytes the fields of one page make, each counted at its largest.
FIELDS_BYTES = 2 * MIB
#: Rows of a repeated field one page shows at most.
ROWS_SHOWN = 25
#: The most characters of a message shown (at a field, or listed above the form).
MESSAGE_CHARS = 200
#: The most characters of a webhook's name in a field's "filled in by" mark.
SOURCE_CHARS = 40
#: The most characters of a number or a date that could not be read, shown again.
TYPED_CHARS = 100
#: The most characters of a deeper-repeated answer, shown as text.
SHOWN_CHARS = 2_000
#: Warnings listed above the form at most, of each kind; the page says how many more.
LISTED = 50
#: The most bytes an interview page (or one of its fragments) is.
PAGE_BYTES = 4 * MIB

#: The most bytes one character of text takes in the page, escaped (`&#39;`).
_CHAR = 5

# The markup around the text, at its largest (the longest indices, every attribute an
# input can have), measured from the templates (`platform/_answer_fields.html`) and
# rounded up: `tests/ui/test_interview_page_bound.py` renders fields of every kind and
# checks that none passes what is counted here.
#: A field: its box, the hidden inputs, the label, the largest input, the message and mark.
_FIELD = 700
#: A repeated field's fieldset, window, paging and add button, beside `_FIELD`.
_REPEAT = 800
#: One row of a repeated field: its item, input and remove button.
_ROW = 600
#: One checkbox of a multiple choice.
_OPTION = 140
#: A field too large to show: its name and why.
_TOO_LARGE = 400
#: The room a field keeps for its message (cut to `MESSAGE_CHARS`), the id of its input
#: that could not be saved, and a webhook's mark (its name, twice); a repeated field, for
#: the ids of its rows that could not be.
_MESSAGE = _CHAR * MESSAGE_CHARS + 20 + 2 * _CHAR * SOURCE_CHARS
_ROW_IDS = 20 * ROWS_SHOWN


def text_bytes(text: str) -> int:
    """The most bytes `text` can take in the page, escaped."""
    return _CHAR * len(text)


@dataclass(frozen=True)
class View:
    """Where the person is: the first field of the page (`first`, a variable's position)
    and, for a repeated field, the first row shown (`starts`). Carried by the form (hidden
    inputs) and by the page's address (`?first=…&start.3=…`)."""

    first: int = 0
    starts: Mapping[int, int] = field(default_factory=dict)

    @classmethod
    def read(cls, values: Any) -> View:
        """The view a form or a query string names (anything that is not a whole number
        is left out: the start)."""
        starts: dict[int, int] = {}
        for key in list(values.keys()):
            if isinstance(key, str) and key.startswith("start."):
                index, start = whole(key[6:], -1), whole(values.get(key), -1)
                if index >= 0 and start >= 0:
                    starts[index] = start
        return cls(max(whole(values.get("first"), 0), 0), starts)

    def moved(self, *, first: int | None = None, index: int = -1, start: int = 0) -> View:
        starts = dict(self.starts)
        if index >= 0:
            starts[index] = max(start, 0)
        return View(self.first if first is None else max(first, 0), starts)

    def query(self) -> str:
        """The view as a query string ("" at the start)."""
        pairs: list[tuple[str, int]] = [("first", self.first)] if self.first else []
        pairs += [(f"start.{i}", s) for i, s in sorted(self.starts.items()) if s]
        return "?" + urlencode(pairs) if pairs else ""


def whole(text: Any, default: int = 0) -> int:
    """`text` as a whole number, or `default`."""
    try:
        return int(str(text))
    except ValueError:
        return default


@dataclass(frozen=True)
class Window:
    """The rows of a repeated field a page shows: `size` at most (as many as fit), from
    `start` (a multiple of `size`), of `total`."""

    start: int
    size: int
    total: int

    @property
    def end(self) -> int:
        return min(self.start + self.size, self.total)

    @property
    def paged(self) -> bool:
        return self.total > self.size

    @property
    def previous(self) -> int | None:
        return self.start - self.size if self.start > 0 else None

    @property
    def next(self) -> int | None:
        return self.start + self.size if self.start + self.size < self.total else None


@dataclass(frozen=True)
class Layout:
    """A page of the interview: fields `first` to `end` (not included) of `count`; the
    first field of the page before (`previous`, None on the first page); the window of
    each repeated field on it; and why each field too large to show is (by position)."""

    first: int
    end: int
    count: int
    previous: int | None
    windows: Mapping[int, Window]
    too_large: Mapping[int, str]

    @property
    def paged(self) -> bool:
        return self.first > 0 or self.end < self.count


@dataclass(frozen=True)
class _Measure:
    """One field, counted: at most `bytes` on a page; `rows` per window if repeated;
    `too_large` the reason it is not shown."""

    bytes: int
    rows: int = 0
    total: int = 0
    too_large: str = ""


def _options_bytes(variable: VariableDef) -> int:
    # Each option is a checkbox, its text twice (the value and the label).
    return sum(_OPTION + 2 * text_bytes(option) for option in variable.options)


def _value_bytes(variable: VariableDef, value: Any) -> int:
    """A leaf answer as an input holds it (a multiple choice's is in its checkboxes), or a
    number or a date as typed, which a step may show again with its problem."""
    size = 0 if value is None or isinstance(value, list | tuple) else text_bytes(str(value))
    if str(variable.type) in ("number", "date"):
        size = max(size, _CHAR * TYPED_CHARS)
    return size


def measure(variable: VariableDef, value: Any) -> _Measure:
    """How many bytes the field of `variable` answered `value` (canonical answer JSON) makes
    at most, with its full window of rows if it is repeated."""
    name = text_bytes(variable.name)
    multiple = bool(variable.options)
    if variable.repeat_depth > 1:
        return _Measure(_FIELD + name + _CHAR * SHOWN_CHARS + _MESSAGE)
    if variable.repeat_depth == 0:
        size = _FIELD + name + _MESSAGE
        size += _options_bytes(variable) if multiple else _value_bytes(variable, value)
        if size > FIELDS_BYTES:
            alone = "its choices alone are" if multiple else "its answer alone is"
            return _too_large(name, f"{alone} more than a page holds")
        return _Measure(size)
    rows = value if isinstance(value, list) else []
    # The row's label and the remove button's name it; each row counts as the largest.
    largest = _ROW + 2 * name
    if multiple:
        largest += _options_bytes(variable)
    else:
        largest += max(
            (_value_bytes(variable, row) for row in rows), default=_value_bytes(variable, None)
        )
    # Named in the legend, the add button and the paging buttons.
    header = _FIELD + _REPEAT + 5 * name + _MESSAGE + _ROW_IDS
    fit = min(ROWS_SHOWN, (FIELDS_BYTES - header) // largest)
    if fit < 1:
        reason = (
            "one row's choices alone are more than a page holds"
            if multiple
            else "one of its rows alone is more than a page holds"
        )
        return _too_large(name, reason, len(rows))
    return _Measure(header + min(len(rows), fit) * largest, fit, len(rows))


def _too_large(name: int, reason: str, rows: int = 0) -> _Measure:
    return _Measure(_FIELD + _TOO_LARGE + name + _MESSAGE, total=rows, too_large=reason)


def lay_out(
    variables: Sequence[VariableDef],
    values: Mapping[str, Any],
    view: View,
    *,
    keep: int | None = None,
) -> Layout:
    """The page of `view`: from its first field, as many as fit `FIELDS_BYTES` (always one),
    each repeated one at its window. `keep`: a field that must be on the page (the one an
    action was about): the page starts there if it would not be on it otherwise."""
    measures = [measure(v, values.get(v.name)) for v in variables]
    count = len(variables)
    first = min(view.first, max(count - 1, 0))
    if keep is not None and 0 <= keep < first:
        first = keep
    end = _fill(measures, first)
    if keep is not None and end <= keep < count:
        first, end = keep, _fill(measures, keep)
    previous = None
    if first > 0:
        start = 0
        while True:
            following = _fill(measures, start)
            if following >= first:
                break
            start = following
        previous = start
    windows = {}
    for index in range(first, end):
        found = measures[index]
        if found.rows and variables[index].repeat_depth == 1:
            start = min(view.starts.get(index, 0), max(found.total - 1, 0))
            windows[index] = Window(start - start % found.rows, found.rows, found.total)
    too_large = {i: measures[i].too_large for i in range(first, end) if measures[i].too_large}
    return Layout(first, end, count, previous, windows, too_large)


def _fill(measures: Sequence[_Measure], first: int) -> int:
    """Where the page that starts at field `first` ends."""
    used, end = 0, first
    while end < len(measures) and (end == first or used + measures[end].bytes <= FIELDS_BYTES):
        used += measures[end].bytes
        end += 1
    return end


def clip(text: str, most: int = MESSAGE_CHARS) -> str:
    """`text`, cut to `most` characters (the last an ellipsis) when longer."""
    return text if len(text) <= most else text[: most - 1] + "…"
