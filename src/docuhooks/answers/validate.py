"""Fit an answer set to a template's variables (SPEC §8): what does not fit is dropped with a
warning that names the variable; everything else still applies."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

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


def variable_map(variables: Iterable[VariableDef]) -> dict[str, VariableDef]:
    """Variables by name; a name declared twice is an error."""
    by_name: dict[str, VariableDef] = {}
    for variable in variables:
        if variable.name in by_name:
            raise AnswerSetError("is declared more than once", f"variable {variable.name!r}")
        by_name[variable.name] = variable
    return by_name


def validate_against(
    answers: AnswerSet, variables: Mapping[str, VariableDef]
) -> tuple[AnswerSet, tuple[str, ...]]:
    """The answers that fit `variables`, and one warning per answer dropped.

    An answer is dropped when no variable has its name, when its type differs from the
    variable's, when its repeat nesting differs from the variable's repeat depth, or when a
    selected option is not one of the variable's options. Unanswered (`None`) fits any
    variable of the same type and depth. A repeated multiple-choice variable answered with
    an empty selection `[]` is read as "no iterations", i.e. unanswered.
    """
    kept: list[Answer] = []
    warnings: list[str] = []
    for answer in answers.answers:
        variable = variables.get(answer.name)
        problem = (
            f"the template has no variable named {answer.name!r}"
            if variable is None
            else _misfit(answer, variable)
        )
        if problem is not None:
            warnings.append(f'answer "{answer.name}": {problem}; ignored')
            continue
        assert variable is not None  # _misfit ran, so the variable exists
        kept.append(_fitted(answer, variable))
    return AnswerSet(kept), tuple(warnings)


def _fitted(answer: Answer, variable: VariableDef) -> Answer:
    if (
        variable.type is AnswerType.MULTIPLECHOICE
        and variable.repeat_depth > 0
        and answer.value == Selection(())
    ):
        return Answer(answer.name, answer.type, None)
    return answer


def _misfit(answer: Answer, variable: VariableDef) -> str | None:
    if answer.type is not variable.type:
        return f"is {answer.type} but the template declares {variable.type}"
    value = _fitted(answer, variable).value
    if not fits_repeat_depth(value, variable.repeat_depth):
        return (
            f"the template declares repeat depth {variable.repeat_depth}, "
            f"but the value nests {answer.repeat_depth} level(s) deep"
        )
    if variable.type is AnswerType.MULTIPLECHOICE:
        unknown = sorted(_selected(value) - set(variable.options))
        if unknown:
            return (
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
