"""How an interview page is laid out (`ui.interview_layout`), without a server: each field
is counted at no less than it can make in the page, whatever its name, options, answer,
problems and marks; a page holds what fits; a repeat shows a window of its rows."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.datastructures import FormData, UploadFile

from docuhooks.answers import VariableDef
from docuhooks.answers.model import AnswerType
from docuhooks.ui import interview_form as forms
from docuhooks.ui import interview_layout as layouts
from docuhooks.ui.interview_layout import ROWS_SHOWN, View, Window, lay_out, measure
from docuhooks.ui.rendering import environment

#: Text at its most expensive: each character escaped to five bytes, or four in UTF-8.
_COSTLY = st.text(st.sampled_from("'\"<>&a é😀"), min_size=1, max_size=40)
_NAMES = _COSTLY.map(lambda text: f"v{text}v")


@st.composite
def fields(draw: st.DrawFn) -> tuple[VariableDef, Any]:
    """A variable of any kind, and an answer it can hold (canonical answer JSON)."""
    kind = draw(st.sampled_from([t.value for t in AnswerType]))
    depth = draw(st.integers(0, 2))
    options: tuple[str, ...] = ()
    if kind == "multiplechoice":
        options = tuple(draw(st.lists(_COSTLY, min_size=1, max_size=6, unique=True)))
    variable = VariableDef(draw(_NAMES), AnswerType(kind), depth, options)
    leaf: st.SearchStrategy[Any] = {
        "text": _COSTLY,
        "number": st.integers(-(10**15), 10**15) | st.floats(-1e300, 1e300),
        "date": st.dates().map(lambda d: d.isoformat()),
        "truefalse": st.booleans(),
        "multiplechoice": st.lists(st.sampled_from(options or ("x",)), unique=True, min_size=1),
    }[kind]
    value: st.SearchStrategy[Any] = st.none() | leaf
    for _ in range(depth):
        value = st.none() | st.lists(value, min_size=1, max_size=ROWS_SHOWN + 5)
    return variable, draw(value)


def _html(field: forms.Field) -> str:
    module: Any = environment.get_template("platform/_answer_fields.html").module
    return str(module.field(field))


def _rendered(field: forms.Field) -> int:
    return len(_html(field).encode())


def _typed_badly(variable: VariableDef, rows: int) -> FormData:
    """The field's form with everything typed as it cannot be read, at length (and a
    window's digest, which is shown again with it, the longest a window's may be)."""
    junk = "'" * 500
    pairs: list[tuple[str, str | UploadFile]] = [("fields", "0")]
    if variable.repeat_depth == 0:
        pairs.append(("f0", junk))
    else:
        pairs += [("start.0", "0"), ("rows.0", str(rows)), ("digest.0", "f" * 16 * ROWS_SHOWN)]
        pairs += [(f"f0.{row}", junk) for row in range(rows)]
    return FormData(pairs)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(fields(), st.integers(0, 40))
def test_no_field_makes_more_than_it_is_counted_at(field: Any, start: int) -> None:
    """Rendered with the longest of everything a step can put at a field (what was typed
    and could not be read, a problem at the field, a webhook's mark), a field never passes
    the bytes its page counted for it."""
    variable, value = field
    counted = measure(variable, value)
    layout = lay_out([variable], {variable.name: value}, View(0, {0: start}))
    [shown] = forms.fields_of(
        [variable], {"answers": [{"name": variable.name, "value": value}]}, layout
    )
    plain = _rendered(shown)
    rows = len(shown.value) if shown.repeated else 1
    submitted = forms.read_form(_typed_badly(variable, rows), [variable], {})
    warning = {"source": "answers", "variable": variable.name, "message": "'" * 1_000}
    sources = {variable.name: {"webhookName": "'" * 200}}
    forms.apply_problems([shown], submitted, [warning], sources)
    assert _rendered(shown) <= counted.bytes
    assert plain <= counted.bytes


def test_the_markup_of_every_kind_of_field_is_counted_at_its_largest() -> None:
    """The fixed markup of each kind of field, at its largest: the last of 5,000 fields, the
    last window of 10,000 rows (the most the limits allow), every row unreadable, a problem
    and a mark. With one-letter text, what is counted is then mostly that markup."""
    others = [VariableDef(f"n{n}", AnswerType.TEXT) for n in range(4_999)]
    for kind in AnswerType:
        for depth in (0, 1, 2):
            options = ("o",) if kind is AnswerType.MULTIPLECHOICE else ()
            variable = VariableDef("x", kind, depth, options)
            leaf = ["o"] if options else None
            value: Any = [leaf] * 10_000 if depth == 1 else leaf
            if depth == 2:
                value = [[leaf] * 100] * 100
            view = View(4_999, {4_999: 9_999})
            variables = [*others, variable]
            layout = lay_out(variables, {"x": value}, view)
            answers = {"answers": [{"name": "x", "value": value}]}
            [shown] = forms.fields_of(variables, answers, layout)
            rows = len(shown.value) if shown.repeated else 1
            pairs: list[tuple[str, str | UploadFile]] = [("fields", "4999")]
            pairs.append(("start.4999", str(shown.window.start)))
            pairs += [("rows.4999", str(rows)), ("f4999", "'" * 500)]
            pairs.append(("digest.4999", "f" * 16 * ROWS_SHOWN))
            pairs += [(f"f4999.{r}", "'" * 500) for r, _ in shown.rows] if shown.repeated else []
            submitted = forms.read_form(FormData(pairs), variables, {})
            warning = {"source": "answers", "variable": "x", "message": "'" * 1_000}
            forms.apply_problems([shown], submitted, [warning], {"x": {"webhookName": "'" * 99}})
            assert _rendered(shown) <= measure(variable, value).bytes, (kind, depth)


def test_a_repeat_shows_a_window_of_its_rows_aligned_to_the_window_size() -> None:
    parties = VariableDef("Parties", AnswerType.TEXT, 1)
    values = {"Parties": [f"Party {n}" for n in range(1_000)]}
    assert lay_out([parties], values, View()).windows[0] == Window(0, ROWS_SHOWN, 1_000)
    moved = lay_out([parties], values, View(0, {0: 977})).windows[0]
    assert (moved.start, moved.end, moved.previous, moved.next) == (975, 1_000, 950, None)
    past = lay_out([parties], values, View(0, {0: 5_000})).windows[0]
    assert past.start == 975  # past the end: the last window
    # Rows whose largest is long come fewer to a window: as many as fit a page.
    long = {"Parties": ["'" * 65_536, *values["Parties"]]}
    window = lay_out([parties], long, View()).windows[0]
    assert 1 <= window.size < ROWS_SHOWN


def test_a_field_too_large_for_a_page_is_named_not_shown() -> None:
    choices = tuple(f"{n:04d} " + "'" * 600 for n in range(1_000))
    big = VariableDef("Big", AnswerType.MULTIPLECHOICE, 0, choices)
    rows = VariableDef("Rows", AnswerType.MULTIPLECHOICE, 1, choices)
    small = VariableDef("Small", AnswerType.TEXT)
    values = {"Rows": [[choices[0]]] * 30}
    layout = lay_out([big, rows, small], values, View())
    assert layout.too_large.keys() == {0, 1} and (layout.first, layout.end) == (0, 3)
    shown = forms.fields_of(
        [big, rows, small], {"answers": [{"name": "Rows", "value": values["Rows"]}]}, layout
    )
    assert [f.editable for f in shown] == [False, False, True]
    assert shown[1].too_large.startswith("30 rows;")
    html = _html(shown[1])
    assert "Too large to change on this page" in html and 'name="fields"' not in html


def test_a_page_holds_what_fits_and_the_field_an_action_is_about(monkeypatch: Any) -> None:
    notes = [VariableDef(f"Note {n:02d}", AnswerType.TEXT) for n in range(100)]
    each = measure(notes[0], None).bytes
    monkeypatch.setattr(layouts, "FIELDS_BYTES", 10 * each)
    first = lay_out(notes, {}, View())
    assert (first.first, first.end, first.previous) == (0, 10, None)
    third = lay_out(notes, {}, View(25))
    assert (third.first, third.end, third.previous) == (25, 35, 20)
    assert lay_out(notes, {}, View(25), keep=40).first == 40
    assert lay_out(notes, {}, View(500)).first == 99  # past the end: the last field
    # A field that fills a page is a page alone; one that would pass it, a field too large.
    values = {"Note 03": "x" * (9 * each // 5 - 2)}
    alone = lay_out(notes, values, View(3))
    assert (alone.first, alone.end, alone.previous) == (3, 4, 0)
    assert lay_out(notes, values, View()).end == 3 and not alone.too_large
    values = {"Note 03": "x" * (2 * each)}
    assert lay_out(notes, values, View(3)).too_large == {
        3: "its answer alone is more than a page holds"
    }


def test_the_view_is_read_from_a_form_or_an_address_and_written_back() -> None:
    view = View.read(
        FormData([("first", "12"), ("start.3", "50"), ("start.x", "1"), ("start.4", "-2")])
    )
    assert view == View(12, {3: 50})
    assert view.query() == "?first=12&start.3=50"
    assert View.read(FormData([("first", "many")])) == View() and View().query() == ""


def test_an_answer_shown_as_text_is_cut() -> None:
    deep = [["'" * 100] * 100] * 100
    shown = forms.shown(deep)
    assert len(shown) == layouts.SHOWN_CHARS and shown.endswith("…")
    assert forms.shown([[1, None], None]) == "[[1, Not answered], Not answered]"
