"""Answer sets: the model, canonical and shorthand JSON, HotDocs answer XML,
fitting to a template's variables, and overlay. Pure: bytes and objects in, objects out."""

from docuhooks.answers.errors import AnswerSetError
from docuhooks.answers.hotdocs import parse_hotdocs_xml, to_hotdocs_xml
from docuhooks.answers.jsonformat import (
    ParseResult,
    parse_answer_json,
    parse_canonical,
    parse_shorthand,
    parse_stored,
)
from docuhooks.answers.limits import (
    DEFAULT_LIMITS,
    AnswerLimitExceeded,
    AnswerLimits,
    AnswerSetTooLarge,
    Totals,
    check_answers,
    check_document_size,
    check_overlay,
    measure,
)
from docuhooks.answers.model import (
    MAX_REPEAT_DEPTH,
    Answer,
    AnswerSet,
    AnswerType,
    Selection,
    Value,
    VariableDef,
)
from docuhooks.answers.offload import answers_size, heavy, load_template_variables, off_loop
from docuhooks.answers.payload import parse_answer_payload
from docuhooks.answers.validate import (
    AnswerWarning,
    WarningCode,
    cached_template_variables,
    fit_answers,
    template_variables,
    validate_against,
    variable_map,
    variables_from_json,
)

__all__ = [
    "DEFAULT_LIMITS",
    "MAX_REPEAT_DEPTH",
    "Answer",
    "AnswerLimitExceeded",
    "AnswerLimits",
    "AnswerSet",
    "AnswerSetError",
    "AnswerSetTooLarge",
    "AnswerType",
    "AnswerWarning",
    "ParseResult",
    "Selection",
    "Totals",
    "Value",
    "VariableDef",
    "WarningCode",
    "answers_size",
    "cached_template_variables",
    "check_answers",
    "check_document_size",
    "check_overlay",
    "fit_answers",
    "heavy",
    "load_template_variables",
    "measure",
    "off_loop",
    "parse_answer_json",
    "parse_answer_payload",
    "parse_canonical",
    "parse_hotdocs_xml",
    "parse_shorthand",
    "parse_stored",
    "template_variables",
    "to_hotdocs_xml",
    "validate_against",
    "variable_map",
    "variables_from_json",
]
