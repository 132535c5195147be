"""The interview form ↔ answers, without a server: fields by type, a submitted form read
back as shorthand answers, and what cannot be read kept at its field."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st
from starlette.datastructures import FormData

from docuhooks.answers import VariableDef
from docuhooks.answers.model import AnswerType
from docuhooks.ui import interview_form as forms
from docuhooks.ui.interview_layout import ROWS_SHOWN, View, lay_out
from docuhooks.ui.rendering import environment

VARIABLES = (
    VariableDef("Name", AnswerType.TEXT),
    VariableDef("Fee", AnswerType.NUMBER),
    VariableDef("Start", AnswerType.DATE),
    VariableDef("Urgent", AnswerType.TRUEFALSE),
    VariableDef("Colour", AnswerType.MULTIPLECHOICE, options=("Red", "Blue")),
    VariableDef("Parties", AnswerType.TEXT, repeat_depth=1),
    VariableDef("Grid", AnswerType.NUMBER, repeat_depth=2),
)


def form(*pairs: tuple[str, str]) -> FormData:
    return FormData(list(pairs))


def fields_of(variables: Any, answers: dict[str, Any], view: View | None = None) -> Any:
    """The fields of the page `view` (the first) shows of these answers."""
    layout = lay_out(variables, forms.values_by_name(answers), view or View())
    return forms.fields_of(variables, answers, layout)


def answers_of(**values: Any) -> dict[str, Any]:
    """Canonical answer JSON of these answers (their types do not matter here)."""
    return {"answers": [{"name": name, "value": value} for name, value in values.items()]}


_HIDDEN = re.compile(r'<input type="hidden" (?:id="[^"]*" )?name="([^"]+)" value="([^"]*)">')


def window(
    variables: Any, saved: dict[str, Any], index: int, start: int = 0
) -> list[tuple[str, str]]:
    """The hidden inputs the page of the `saved` answers (by name) has for the window of
    repeated field `index` from row `start`, as rendered: which rows, of how many, and
    what they held."""
    view = View(index, {index: start})
    [shown] = [f for f in fields_of(variables, answers_of(**saved), view) if f.index == index]
    module: Any = environment.get_template("platform/_answer_fields.html").module
    return _HIDDEN.findall(str(module.field(shown)))


def test_fields_show_each_answer_as_its_input_holds_it() -> None:
    answers = {
        "answers": [
            {"name": "Name", "type": "text", "value": "Ann\nLee"},
            {"name": "Fee", "type": "number", "value": 12.5},
            {"name": "Urgent", "type": "truefalse", "value": False},
            {"name": "Colour", "type": "multiplechoice", "value": ["Blue"]},
            {"name": "Parties", "type": "text", "value": ["Acme", None]},
            {"name": "Grid", "type": "number", "value": [[1, 2], None]},
        ]
    }
    fields = fields_of(VARIABLES, answers)
    values = [f.value for f in fields]
    assert values[:6] == ["Ann\nLee", "12.5", "", "false", ["Blue"], ["Acme", ""]]
    assert fields[0].multiline and not fields[1].multiline
    assert fields[5].repeated and fields[5].editable
    # Deeper repeats are shown, not edited.
    assert not fields[6].editable and fields[6].shown == "[[1, 2], Not answered]"


def test_a_form_reads_back_as_shorthand_answers() -> None:
    # Two rows added (`add_row`), unanswered: the page shows their inputs.
    saved = {"Parties": [None, None]}
    submitted = forms.read_form(
        form(
            *[("fields", str(i)) for i in range(7)],
            ("f0", "Ann\r\nLee"),
            ("f1", " -1.5e3 "),
            ("f2", "2026-12-01"),
            ("f3", "true"),
            ("f4", "Red"),
            ("f4", "Blue"),
            *window(VARIABLES, saved, 5),
            ("f5.0", "Acme"),
            ("f5.1", ""),
            ("f6", "ignored: never edited here"),
        ),
        VARIABLES,
        saved,
    )
    assert submitted.errors == {}
    assert submitted.answers == {
        "Name": "Ann\nLee",
        "Fee": -1500,
        "Start": "2026-12-01",
        "Urgent": True,
        "Colour": ["Red", "Blue"],
        "Parties": ["Acme", None],
    }


def test_empty_inputs_are_unanswered_and_unlisted_fields_untouched() -> None:
    submitted = forms.read_form(
        form(
            ("fields", "0"),
            ("fields", "4"),
            ("fields", "5"),
            ("f0", "  "),
            *window(VARIABLES, {}, 5),
        ),
        VARIABLES,
        {},
    )
    assert submitted.answers == {"Name": None, "Colour": None, "Parties": None}


def test_saving_a_window_of_rows_keeps_the_rows_not_shown() -> None:
    """A page shows some rows of a long repeat (`start.5`, `rows.5`): the answer saved is
    the saved rows with those replaced, however many there are."""
    saved = {"Parties": [f"Party {n}" for n in range(1_000)]}
    shown = window(VARIABLES, saved, 5, start=500)
    assert ("start.5", "500") in shown and ("rows.5", "25") in shown
    typed = [(f"f5.{n}", f"Changed {n}") for n in range(500, 525)]
    submitted = forms.read_form(form(("fields", "5"), *shown, *typed), VARIABLES, saved)
    rows = submitted.answers["Parties"]
    assert len(rows) == 1_000
    assert rows[:500] == saved["Parties"][:500] and rows[525:] == saved["Parties"][525:]
    assert rows[500:525] == [f"Changed {n}" for n in range(500, 525)]
    assert submitted.windows == {5: (500, 25)}
    # More rows than a page shows are not read: the form cannot cut the answer short.
    first = [(name, value) for name, value in window(VARIABLES, saved, 5) if name != "rows.5"]
    typed = [(f"f5.{n}", "x") for n in range(2_000)]
    submitted = forms.read_form(
        form(("fields", "5"), *first, ("rows.5", "2000"), *typed), VARIABLES, saved
    )
    assert submitted.answers["Parties"] == ["x"] * ROWS_SHOWN + saved["Parties"][ROWS_SHOWN:]
    # A field not in the form keeps its answer whole.
    assert forms.read_form(form(("fields", "0")), VARIABLES, saved).answers == {"Name": None}


def test_only_the_answers_that_changed_are_saved() -> None:
    saved = {"Name": "Ann", "Parties": ["Acme", "Beta"]}
    submitted = forms.read_form(
        form(
            ("fields", "0"),
            ("fields", "5"),
            ("f0", "Ann"),
            *window(VARIABLES, saved, 5),
            ("f5.0", "Acme"),
            ("f5.1", "Beta"),
        ),
        VARIABLES,
        saved,
    )
    assert submitted.answers == saved and submitted.windows == {5: (0, 2)}
    assert forms.changed(submitted, saved) == {}
    submitted.answers["Name"] = "Bo"
    assert forms.changed(submitted, saved) == {"Name": "Bo"}


def test_what_cannot_be_read_stays_at_its_field() -> None:
    submitted = forms.read_form(
        form(
            *[("fields", str(i)) for i in range(6)],
            ("f0", "fine"),
            ("f1", "12abc"),
            ("f2", "2026-02-30"),
            ("f3", "maybe"),
            ("f4", "Green"),
            *window(VARIABLES, {"Parties": [None, None]}, 5),
            ("f5.0", "Acme"),
            ("f5.1", "Beta"),
        ),
        VARIABLES,
        {"Parties": [None, None]},
    )
    assert submitted.answers == {"Name": "fine", "Parties": ["Acme", "Beta"]}
    assert set(submitted.errors) == {"f1", "f2", "f3", "f4"}
    assert "“12abc” is not a number" in submitted.errors["f1"]
    fields = fields_of(VARIABLES, {"answers": []})
    forms.apply_problems(fields, submitted, [], {})
    assert fields[1].value == "12abc" and fields[1].invalid_ids == "f1"
    assert fields[1].error.startswith("“12abc” is not a number")


def test_a_bad_row_keeps_the_whole_repeat_as_it_was() -> None:
    variables = (VariableDef("Amounts", AnswerType.NUMBER, repeat_depth=1),)
    submitted = forms.read_form(
        form(("fields", "0"), ("rows.0", "2"), ("f0.0", "1"), ("f0.1", "two")), variables, {}
    )
    assert submitted.answers == {}
    assert submitted.errors == {
        "f0-1": "Row 2: “two” is not a number: use digits, such as 1500 or 12.5"
    }
    assert submitted.typed == {0: ["1", "two"]}
    assert not forms.add_row(submitted, variables[0])  # nothing to add a row to


def test_rows_are_added_and_removed() -> None:
    variable = VARIABLES[5]
    submitted = forms.Submitted({"Parties": ["Acme"]}, {}, {})
    assert forms.add_row(submitted, variable)
    assert submitted.answers["Parties"] == ["Acme", None]
    assert forms.remove_row(submitted, variable, 0)
    assert submitted.answers["Parties"] == [None]
    assert not forms.remove_row(submitted, variable, 5)
    assert forms.remove_row(submitted, variable, 0)
    assert submitted.answers["Parties"] is None


def test_warnings_and_sources_land_at_their_fields() -> None:
    fields = fields_of(VARIABLES, {"answers": []})
    forms.apply_problems(
        fields,
        None,
        [
            {"source": "answers", "variable": "Fee", "message": "not a number"},
            {"source": "webhook", "variable": "Start", "message": "not a date"},
        ],
        {"Name": {"webhookId": "w1", "webhookName": "Client register"}},
    )
    assert fields[0].source == "Client register"
    assert fields[1].errors == {"f1": "not a number"}
    assert fields[2].errors == {}  # a webhook's misfit is listed with its warnings instead


class _CountedErrors(dict[str, str]):
    """A form's problems, counting how often they are gone through."""

    passes = 0

    def items(self) -> Any:
        _CountedErrors.passes += 1
        return super().items()


def test_problems_reach_their_fields_in_one_pass() -> None:
    """Every problem used to be looked at for every field: a form of 5,000 unreadable
    numbers was 25 million comparisons, ten seconds of the thread building the page."""
    count = 300
    variables = [VariableDef(f"N{i}", AnswerType.NUMBER) for i in range(count)]
    submitted = forms.read_form(
        form(*[("fields", str(i)) for i in range(count)], *[(f"f{i}", "x") for i in range(count)]),
        variables,
        {},
    )
    submitted.errors = _CountedErrors(submitted.errors)
    fields = fields_of(variables, {"answers": []})
    forms.apply_problems(fields, submitted, [], {})
    assert _CountedErrors.passes == 1
    assert all(f.errors == {f.id: submitted.errors[f.id]} for f in fields)
    assert [f.value for f in fields] == ["x"] * count


def test_a_choice_keeps_each_option_once_and_one_stranger() -> None:
    """A forged multiple choice of 100,000 values (the most a form carries) was kept whole to
    be drawn again at its problem, each value tested against every option; now each option
    once, in the order chosen, and only the first value that is not one, which the problem
    names."""
    forged = [("f4", "Blue"), ("f4", "Red"), ("f4", "Blue")]
    forged += [("f4", f"Stranger {i}") for i in range(100_000)]
    submitted = forms.read_form(form(("fields", "4"), *forged), VARIABLES, {})
    assert submitted.errors["f4"].startswith("'Stranger 0' is not one of the choices")
    assert submitted.typed == {4: ["Blue", "Red", "Stranger 0"]}
    chosen = forms.read_form(
        form(("fields", "4"), ("f4", "Blue"), ("f4", "Red"), ("f4", "Blue")), VARIABLES, {}
    )
    assert chosen.answers == {"Colour": ["Blue", "Red"]}


PARTIES = VariableDef("Parties", AnswerType.TEXT, repeat_depth=1)


def _saved_window(
    saved: list[Any], start: int, typed: dict[int, str], **forged: str
) -> forms.Submitted:
    """The window of `Parties` a page of `saved` shows from row `start`, read back with the
    rows `typed` (row: text) and the hidden inputs `forged` (name: value)."""
    hidden = dict(window([PARTIES], {"Parties": saved}, 0, start))
    hidden |= forged
    rows = [(f"f0.{row}", text) for row, text in typed.items()]
    return forms.read_form(
        form(("fields", "0"), *hidden.items(), *rows), [PARTIES], {"Parties": saved}
    )


def test_a_window_adds_no_rows() -> None:
    """The last window of 40 rows shows 15. A form saying it shows more (`rows.0`) added
    the rows past the end, empty: rows no page offered (*Add a row* adds one, at the
    end). It is refused whole, not cut short: saving part of what it holds would drop
    the rest without a word."""
    saved = [f"Party {n}" for n in range(40)]
    assert ("rows.0", "15") in window([PARTIES], {"Parties": saved}, 0, 25)
    typed = {row: f"Extra {row}" for row in range(25, 50)}
    for count in ("16", "25", "26", str(10**30)):
        submitted = _saved_window(saved, 25, typed, **{"rows.0": count})
        assert submitted.answers == {} and submitted.windows == {}
        assert submitted.errors["f0"].startswith("these rows were not saved: the form names")
    # Made by hand, without the page's count of rows or digest: refused the same.
    bare = form(("fields", "0"), ("start.0", "25"), ("rows.0", "25"), ("f0.40", "x"))
    refused = forms.read_form(bare, [PARTIES], {"Parties": saved})
    assert refused.answers == {} and "the form names rows up to 50" in refused.errors["f0"]
    # The page's own window is saved; a row is added by *Add a row*, at the end.
    shown = _saved_window(saved, 25, {row: saved[row] for row in range(25, 39)} | {39: "Last"})
    assert shown.answers == {"Parties": [*saved[:39], "Last"]}
    assert forms.add_row(shown, PARTIES)
    assert shown.answers["Parties"] == [*saved[:39], "Last", None]


def test_a_window_needs_the_digest_of_the_rows_it_showed() -> None:
    """Without the digest of the rows shown, or with any other, a window is refused:
    nothing of it is read into the answers, and nothing raises."""
    saved = [f"Party {n}" for n in range(40)]
    for digest in ("", "0" * 32, "x" * 100_000, "é😀\x00", forms.window_digest(1, saved[:25])):
        submitted = _saved_window(saved, 0, {0: "New"}, **{"digest.0": digest})
        assert submitted.answers == {}, digest
        assert "were changed since this page was shown" in submitted.errors["f0"]
    missing = form(("fields", "0"), ("start.0", "0"), ("rows.0", "25"), ("total.0", "40"))
    assert forms.read_form(missing, [PARTIES], {"Parties": saved}).answers == {}


def test_a_window_digest_is_of_its_start_and_rows_in_order_and_short() -> None:
    """16 characters a row, of its place and its value, however large the rows."""
    rows: list[Any] = ["a", None, 1, 1.5, True, ["x"]]
    digest = forms.window_digest(0, rows)
    assert len(digest) == 16 * len(rows) and digest == forms.window_digest(0, list(rows))
    assert digest != forms.window_digest(1, rows)
    assert digest != forms.window_digest(0, rows[::-1])
    assert digest != forms.window_digest(0, ["a", "", 1, 1.5, True, ["x"]])
    assert digest != forms.window_digest(0, rows[:-1])
    assert len(forms.window_digest(0, ["'" * 1_000_000] * ROWS_SHOWN)) == 16 * ROWS_SHOWN


def test_a_window_is_saved_over_rows_that_already_hold_what_it_posts() -> None:
    """A tab's save it has not heard back from (the typing sent as the page goes away
    carries the digest from before it): the rows it wrote hold what the form posts, and
    saving them again changes nothing, so they do not refuse the window. A row holding
    anything else than what the page showed, or than the form posts, does."""
    shown = [f"Party {n}" for n in range(40)]
    since = ["First", *shown[1:]]  # the tab's own save, not yet answered
    inputs = dict(window([PARTIES], {"Parties": shown}, 0))
    typed = [(f"f0.{row}", value) for row, value in enumerate(since[:25])]
    resent = forms.read_form(
        form(("fields", "0"), *inputs.items(), *typed, ("f0.1", "Second")),
        [PARTIES],
        {"Parties": since},
    )
    assert resent.answers == {"Parties": ["First", "Second", *shown[2:]]}
    # Another tab changed row 3 meanwhile: the form posts what the page showed there.
    other = [*since[:2], "Theirs", *since[3:]]
    refused = forms.read_form(
        form(("fields", "0"), *inputs.items(), *typed, ("f0.1", "Second")),
        [PARTIES],
        {"Parties": other},
    )
    assert refused.answers == {}
    assert "were changed since this page was shown" in refused.errors["f0"]


def test_rows_typed_badly_keep_the_digest_they_were_typed_over() -> None:
    """A window with a row that cannot be read is shown again as typed: over the rows it
    was typed over, so its digest is the one posted (a forged one, of any length, is not
    shown again: a page keeps its bound)."""
    variables = (VariableDef("Amounts", AnswerType.NUMBER, repeat_depth=1),)
    shown = dict(window(variables, {"Amounts": [1, 2]}, 0))
    for posted, kept in ((shown["digest.0"], shown["digest.0"]), ("x" * 10_000, "")):
        submitted = forms.read_form(
            form(
                ("fields", "0"),
                *(shown | {"digest.0": posted}).items(),
                ("f0.0", "1"),
                ("f0.1", "two"),
            ),
            variables,
            {"Amounts": [3, 1, 2]},  # a row added before them since
        )
        fields = fields_of(variables, answers_of(Amounts=[3, 1, 2]))
        assert fields[0].digest != shown["digest.0"]
        forms.apply_problems(fields, submitted, [], {})
        assert fields[0].value == ["1", "two"] and fields[0].digest == kept


_ROW_VALUES = st.sampled_from(["a", "b", None])


@st.composite
def _other_tab(draw: st.DrawFn, rows: list[Any]) -> list[Any]:
    """`rows` as another tab (or person) leaves them: rows removed, added at the end, and
    changed, in any order and number (often the count ends as it began)."""
    rows = list(rows)
    for _ in range(draw(st.integers(0, 4))):
        step = draw(st.sampled_from(["remove", "add", "change"]))
        if step == "add":
            rows.append(draw(_ROW_VALUES))
        elif rows:
            row = draw(st.integers(0, len(rows) - 1))
            if step == "remove":
                del rows[row]
            else:
                rows[row] = draw(_ROW_VALUES)
    return rows


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_a_window_is_saved_only_over_the_rows_it_showed(data: st.DataObject) -> None:
    """Whatever another tab did to the rows since a page showed its window, and whatever
    count of rows the form says it shows: the window is saved exactly when the rows at its
    places are the ones it showed, the answer then those rows replaced and no others, and
    never a row added; else it is refused at its field and nothing of it is read."""
    shown_rows = data.draw(st.lists(_ROW_VALUES, max_size=3 * ROWS_SHOWN), label="shown")
    start = data.draw(st.integers(0, 3 * ROWS_SHOWN), label="view")
    stored = data.draw(_other_tab(shown_rows), label="stored")
    inputs = dict(window([PARTIES], {"Parties": shown_rows}, 0, start))
    first, count = int(inputs["start.0"]), int(inputs["rows.0"])
    forged = data.draw(st.none() | st.integers(0, ROWS_SHOWN + 2), label="rows.0")
    posted = count if forged is None else forged
    typed = {row: f"Typed {row}" for row in range(first, first + max(posted, count))}
    submitted = forms.read_form(
        form(
            ("fields", "0"),
            *(inputs | {"rows.0": str(posted)}).items(),
            *((f"f0.{row}", text) for row, text in typed.items()),
        ),
        [PARTIES],
        {"Parties": stored},
    )
    unchanged = len(stored) == len(shown_rows) and (
        stored[first : first + count] == shown_rows[first : first + count]
    )
    if len(stored) != len(shown_rows):
        event("rows added or removed")
    elif not unchanged:
        event("as many rows, those of the window changed or shifted")
    elif posted != count:
        event("rows of the window as shown, a forged count")
    else:
        event("rows of the window as shown")
    if unchanged and posted == count:
        expected = [*stored[:first], *(typed[r] for r in range(first, first + count))]
        expected += stored[first + count :]
        assert submitted.answers == {"Parties": expected or None}
        assert submitted.windows == {0: (first, count)}
    else:
        assert submitted.answers == {} and submitted.windows == {}
        assert submitted.errors["f0"].startswith("these rows were not saved")


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_a_window_changes_only_rows_that_hold_what_it_showed(data: st.DataObject) -> None:
    """Whatever another tab did to the rows, and whatever the form posts for each row (often
    what a row holds already): the window is saved exactly when the count of rows is the
    one it showed and each row at its places holds what it showed or what the form posts,
    so that no row holding anything else is written over."""
    shown_rows = data.draw(st.lists(_ROW_VALUES, max_size=2 * ROWS_SHOWN), label="shown")
    start = data.draw(st.integers(0, 2 * ROWS_SHOWN), label="view")
    stored = data.draw(_other_tab(shown_rows), label="stored")
    inputs = dict(window([PARTIES], {"Parties": shown_rows}, 0, start))
    first, count = int(inputs["start.0"]), int(inputs["rows.0"])
    typed = data.draw(st.lists(_ROW_VALUES, min_size=count, max_size=count), label="typed")
    submitted = forms.read_form(
        form(
            ("fields", "0"),
            *inputs.items(),
            *((f"f0.{row}", text or "") for row, text in enumerate(typed, start=first)),
        ),
        [PARTIES],
        {"Parties": stored},
    )
    places = range(first, first + count)
    safe = len(stored) == len(shown_rows) and all(
        stored[row] in (shown_rows[row], typed[row - first]) for row in places
    )
    event("saved" if safe else "refused")
    if safe:
        expected = [*stored[:first], *typed, *stored[first + count :]]
        assert submitted.answers == {"Parties": expected or None}
    else:
        assert submitted.answers == {} and submitted.windows == {}
        assert submitted.errors["f0"].startswith("these rows were not saved")
