"""Fit an answer set to a template's variables: what does not fit is dropped with a
warning that names the variable; everything else still applies."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from docuhooks.answers.errors import AnswerSetError
from docuhooks.answers.model import (
    Answer,
    AnswerSet,
    AnswerType,
    Selection,
    Value,
    VariableDef,
    fits_repeat_depth,
)


class WarningCode(StrEnum):
    """Why an answer was left out."""

    #: The template has no variable of that name.
    UNKNOWN_VARIABLE = "unknown_variable"
    #: The value is not of the variable's type (or cannot be read as it, in shorthand).
    TYPE_MISMATCH = "type_mismatch"
    #: A multiple-choice answer selects an option the variable does not offer.
    UNKNOWN_OPTION = "unknown_option"
    #: The value's repeat nesting differs from the variable's repeat depth.
    REPEAT_DEPTH = "repeat_depth"


@dataclass(frozen=True, slots=True)
class AnswerWarning:
    """One answer left out of a set, and why. `str()` is the message, as before."""

    variable: str
    code: WarningCode
    message: str

    def __str__(self) -> str:
        return self.message

    @classmethod
    def dropped(cls, variable: str, code: WarningCode, problem: str) -> AnswerWarning:
        return cls(variable, code, f'answer "{variable}": {problem}; ignored')


def variable_map(variables: Iterable[VariableDef]) -> dict[str, VariableDef]:
    """Variables by name; a name declared twice is an error."""
    by_name: dict[str, VariableDef] = {}
    for variable in variables:
        if variable.name in by_name:
            raise AnswerSetError("is declared more than once", f"variable {variable.name!r}")
        by_name[variable.name] = variable
    return by_name


def variables_from_json(raw: Iterable[Mapping[str, Any]] | None) -> tuple[VariableDef, ...]:
    """Variable definitions as templates store them (`{name, type, repeatDepth?, options?}`)
    → `VariableDef`s. Raises `AnswerSetError` (or KeyError/TypeError for a missing or
    misshapen entry) when they cannot be read."""
    return tuple(
        VariableDef(
            name=item["name"],
            type=item["type"],
            repeat_depth=item.get("repeatDepth", 0),
            options=tuple(item.get("options") or ()),
        )
        for item in (raw or ())
    )


#: Templates are immutable once stored, so their variables are read once per (id, sha256).
#: Reading is done off the event loop when the definitions are large
#: (`offload.load_template_variables`), so the cache is guarded for any thread.
_TEMPLATE_VARIABLES: OrderedDict[tuple[str, str], Mapping[str, VariableDef]] = OrderedDict()
_TEMPLATE_VARIABLES_KEPT = 512
#: The most variables kept in all, the least recently used template's forgotten first. Each
#: kept variable is an object every full collection of the garbage collector walks (about
#: 0.1 µs each), and none of them was there for the start-up freeze (`memory.py`) to spare:
#: with a hundred templates of 5,000 variables kept, a full collection took 100–170 ms of
#: CPU, a stall of every thread and of the event loop. 50,000 add about 5 ms to one; reading
#: a template of 5,000 variables again costs 35–50 ms, in the parsing threads.
_TEMPLATE_VARIABLES_MOST = 50_000
_TEMPLATE_VARIABLES_LOCK = threading.Lock()


def template_variables(
    template_id: str, sha256: str, raw: Iterable[Mapping[str, Any]] | None
) -> Mapping[str, VariableDef]:
    """A stored template's variables by name (read-only), read from `raw` the first time.

    Raises as `variables_from_json` and `variable_map` do; a failure is not remembered."""
    found = cached_template_variables(template_id, sha256)
    if found is None:
        found = keep_template_variables(template_id, sha256, read_template_variables(raw))
    return found


def read_template_variables(raw: Iterable[Mapping[str, Any]] | None) -> Mapping[str, VariableDef]:
    """Stored variable definitions → the variables by name (read-only), not kept. Raises as
    `template_variables` does."""
    return MappingProxyType(variable_map(variables_from_json(raw)))


def keep_template_variables(
    template_id: str, sha256: str, variables: Mapping[str, VariableDef]
) -> Mapping[str, VariableDef]:
    """Keep `variables` (as `read_template_variables` made them) for this template, and
    return them. The templates used least recently are forgotten past either bound."""
    with _TEMPLATE_VARIABLES_LOCK:
        key = (template_id, sha256)
        _TEMPLATE_VARIABLES.pop(key, None)
        _TEMPLATE_VARIABLES[key] = variables
        kept = sum(len(each) for each in _TEMPLATE_VARIABLES.values())
        # The newest stays, whatever its size (the catalog's limit is far below the bound).
        while len(_TEMPLATE_VARIABLES) > 1 and (
            len(_TEMPLATE_VARIABLES) > _TEMPLATE_VARIABLES_KEPT or kept > _TEMPLATE_VARIABLES_MOST
        ):
            _, forgotten = _TEMPLATE_VARIABLES.popitem(last=False)
            kept -= len(forgotten)
    return variables


def cached_template_variables(template_id: str, sha256: str) -> Mapping[str, VariableDef] | None:
    """The variables `template_variables` keeps for this template, or None if it has none."""
    key = (template_id, sha256)
    with _TEMPLATE_VARIABLES_LOCK:
        found = _TEMPLATE_VARIABLES.get(key)
        if found is not None:
            _TEMPLATE_VARIABLES.move_to_end(key)  # least recently used goes first
    return found


def validate_against(
    answers: AnswerSet, variables: Mapping[str, VariableDef]
) -> tuple[AnswerSet, tuple[str, ...]]:
    """`fit_answers`, with each warning as its message."""
    kept, dropped = fit_answers(answers, variables)
    return kept, tuple(warning.message for warning in dropped)


def fit_answers(
    answers: AnswerSet, variables: Mapping[str, VariableDef]
) -> tuple[AnswerSet, tuple[AnswerWarning, ...]]:
    """The answers that fit `variables`, and one warning per answer dropped.

    An answer is dropped when no variable has its name, when its type differs from the
    variable's, when its repeat nesting differs from the variable's repeat depth, or when a
    selected option is not one of the variable's options. Unanswered (`None`) fits any
    variable of the same type and depth. A repeated multiple-choice variable answered with
    an empty selection `[]` is read as "no iterations", i.e. unanswered.
    """
    kept: list[Answer] = []
    warnings: list[AnswerWarning] = []
    for answer in answers.answers:
        variable = variables.get(answer.name)
        if variable is None:
            warnings.append(unknown_variable(answer.name))
            continue
        misfit = _misfit(answer, variable)
        if misfit is not None:
            warnings.append(AnswerWarning.dropped(answer.name, *misfit))
            continue
        kept.append(_fitted(answer, variable))
    return AnswerSet(kept), tuple(warnings)


def unknown_variable(name: str) -> AnswerWarning:
    return AnswerWarning.dropped(
        name, WarningCode.UNKNOWN_VARIABLE, f"the template has no variable named {name!r}"
    )


def _fitted(answer: Answer, variable: VariableDef) -> Answer:
    if (
        variable.type is AnswerType.MULTIPLECHOICE
        and variable.repeat_depth > 0
        and answer.value == Selection(())
    ):
        return Answer(answer.name, answer.type, None)
    return answer


def _misfit(answer: Answer, variable: VariableDef) -> tuple[WarningCode, str] | None:
    if answer.type is not variable.type:
        return (
            WarningCode.TYPE_MISMATCH,
            f"is {answer.type} but the template declares {variable.type}",
        )
    value = _fitted(answer, variable).value
    if not fits_repeat_depth(value, variable.repeat_depth):
        return WarningCode.REPEAT_DEPTH, (
            f"the template declares repeat depth {variable.repeat_depth}, "
            f"but the value nests {answer.repeat_depth} level(s) deep"
        )
    if variable.type is AnswerType.MULTIPLECHOICE:
        unknown = sorted(_selected(value) - set(variable.options))
        if unknown:
            return WarningCode.UNKNOWN_OPTION, (
                "selects option(s) the template does not offer: "
                + ", ".join(repr(o) for o in unknown)
                + " (offered: "
                + ", ".join(repr(o) for o in variable.options)
                + ")"
            )
    return None


def _selected(value: Value) -> set[str]:
    if isinstance(value, Selection):
        return set(value.options)
    if isinstance(value, tuple):
        return set().union(*(_selected(item) for item in value))
    return set()
