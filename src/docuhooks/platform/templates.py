"""Template documents: check that an upload is a DOCX and find its placeholders.

Variable names may contain spaces ("Client Name"), Jinja identifiers may not. One rule maps
a name to the identifier a template uses, here and in assembly: every run of characters
that cannot be in an identifier becomes one `_`, and a name starting with a digit gets a
leading `_`. So `Client Name` is `{{ Client_Name }}`, `Child's Name` is `{{ Child_s_Name }}`,
`1st Party` is `{{ _1st_Party }}`.

Templates come from users, so they are parsed and rendered only in Jinja's sandbox, with
the sandbox's own `range()` cap (100,000 items) and a budget on what a render may produce;
the render pool (`platform.renderpool`) adds the time and memory limits only a separate
process can enforce.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import jinja2
from docxtpl import DocxTemplate
from jinja2.sandbox import SandboxedEnvironment

from docuhooks.answers.model import VariableDef
from docuhooks.platform.docxcheck import DocxError, DocxLimitExceeded, DocxLimits, verify_docx

REQUIRED_PARTS = ("[Content_Types].xml", "word/document.xml")
# Names Jinja gives a meaning of its own; a variable cannot be called that in a template.
RESERVED_IDENTIFIERS = frozenset(
    {
        "and",
        "or",
        "not",
        "in",
        "is",
        "if",
        "else",
        "for",
        "true",
        "false",
        "none",
        "True",
        "False",
        "None",
        "loop",
        "self",
        "varargs",
        "kwargs",
        "caller",
    }
)
_NOT_IDENTIFIER = re.compile(r"\W+")


class TemplateError(ValueError):
    """The upload is not a usable template; the message says why."""


class OutputTooLarge(Exception):
    """A render would produce more than its output budget (`render_output_limit_bytes`)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"the template would produce more than {limit} characters; that is the limit "
            "(render_output_limit_bytes)"
        )
        self.limit = limit


@dataclass(frozen=True, slots=True)
class TemplateInfo:
    """What a template document asks for: the identifiers of its placeholders, sorted."""

    placeholders: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DeclarationCheck:
    """Errors make the declarations unusable with the document; warnings do not."""

    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors


def template_identifier(name: str) -> str:
    """The Jinja identifier for variable `name` (see the module docstring)."""
    identifier = _NOT_IDENTIFIER.sub("_", name.strip())
    if identifier[:1].isdigit():
        identifier = "_" + identifier
    return identifier


#: Past this exponent `a ** b` is refused: a few characters of template could ask for an
#: integer of millions of digits.
MAX_POWER_EXPONENT = 1000


class _BudgetedEnvironment(SandboxedEnvironment):
    """The sandbox, with every rendered part counted against one output budget, and `*`
    and `**` refused when their result would blow that budget (`"x" * 10**9`) before it is
    built."""

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, output_limit: int | None) -> None:
        super().__init__(autoescape=True)
        self.output_limit = output_limit
        self.produced = 0

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        if operator_ == "*":
            self._check_repeat(left, right)
            self._check_repeat(right, left)
        elif (
            isinstance(left, int)
            and isinstance(right, int)
            and abs(left) > 1
            and right > MAX_POWER_EXPONENT
        ):
            raise OverflowError(
                f"{left} ** {right}: exponents above {MAX_POWER_EXPONENT} are refused"
            )
        return super().call_binop(context, operator_, left, right)

    def _check_repeat(self, sequence: Any, times: Any) -> None:
        if self.output_limit is None or isinstance(times, bool) or not isinstance(times, int):
            return
        if isinstance(sequence, str | list | tuple) and len(sequence) * times > self.output_limit:
            raise OutputTooLarge(self.output_limit)

    def concat(self, parts: Iterable[str]) -> str:
        # Template.render joins its parts with `environment.concat`: count them as they come.
        return "".join(self._counted(parts))

    def _counted(self, parts: Iterable[str]) -> Iterator[str]:
        for part in parts:
            self.produced += len(part)
            if self.output_limit is not None and self.produced > self.output_limit:
                raise OutputTooLarge(self.output_limit)
            yield part


def sandboxed_environment(output_limit: int | None = None) -> jinja2.Environment:
    """The Jinja environment every template is parsed and rendered with; one per render, as
    it counts what the render produces against `output_limit` characters (None: no budget)."""
    return _BudgetedEnvironment(output_limit)


def inspect_template(docx_bytes: bytes, limits: DocxLimits | None = None) -> TemplateInfo:
    """Check that `docx_bytes` is a DOCX whose placeholders parse; list them.

    Raises `TemplateError` naming the missing part or giving Jinja's syntax error, and
    `DocxLimitExceeded` for an archive over `limits`.
    """
    check_docx(docx_bytes, limits)
    environment = sandboxed_environment()
    try:
        found = DocxTemplate(io.BytesIO(docx_bytes)).get_undeclared_template_variables(
            jinja_env=environment
        )
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"a placeholder cannot be parsed: {exc.message}") from None
    except (KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise TemplateError(f"the document cannot be read as a DOCX: {exc}") from None
    # find_undeclared_variables also reports Jinja's own globals (range, dict, …).
    placeholders = sorted(set(found) - set(environment.globals))
    return TemplateInfo(tuple(placeholders))


def check_docx(
    docx_bytes: bytes, limits: DocxLimits | None = None, *, inflate: bool = True
) -> None:
    """A DOCX is a zip archive holding at least `[Content_Types].xml` and the main document,
    and expanding within `limits` (default: `DocxLimits()`).

    `inflate=False` reads the zip directory only, without limits: for a document the render
    pool has already checked in full (`RenderPool.verify_docx`).
    Raises `DocxLimitExceeded` naming the limit, `TemplateError` for anything else."""
    try:
        if inflate:
            names = verify_docx(docx_bytes, limits or DocxLimits())
        else:
            names = verify_docx(docx_bytes, None, inflate=False)
    except DocxLimitExceeded:
        raise
    except DocxError as exc:
        raise TemplateError(str(exc)) from None
    missing = [part for part in REQUIRED_PARTS if part not in names]
    if missing:
        raise TemplateError(f"not a DOCX: the archive has no {', '.join(missing)}")


def check_declarations(
    info: TemplateInfo,
    variables: Sequence[VariableDef],
    event_elements: Iterable[str] = (),
) -> DeclarationCheck:
    """Do the declarations sent with a template fit its document?

    Errors:
    - a placeholder in the document that no declared variable maps to (it would always
      render empty);
    - two variables with the same name, or whose names map to the same identifier;
    - a variable whose identifier is one Jinja reserves (`for`, `true`, `loop`, …);
    - an interview event element name that is empty or given twice (after trimming).
    Warnings:
    - a declared variable that no placeholder uses (it can still be asked in the interview
      and sent to receivers, so it is allowed).
    """
    errors: list[str] = []
    warnings: list[str] = []
    by_identifier: dict[str, str] = {}
    for variable in variables:
        identifier = template_identifier(variable.name)
        if identifier in RESERVED_IDENTIFIERS:
            errors.append(
                f'variable "{variable.name}": its template name {identifier!r} is reserved by '
                "Jinja; rename the variable"
            )
        other = by_identifier.get(identifier)
        if other == variable.name:
            errors.append(f'variable "{variable.name}": declared more than once')
        elif other is not None:
            errors.append(
                f'variables "{other}" and "{variable.name}" both appear in the template as '
                f"{identifier!r}; rename one"
            )
        else:
            by_identifier[identifier] = variable.name
    used = set(info.placeholders)
    for placeholder in info.placeholders:
        if placeholder not in by_identifier:
            errors.append(
                f"placeholder {placeholder!r} in the document matches no declared variable"
            )
    for identifier, name in by_identifier.items():
        if identifier not in used:
            warnings.append(f'variable "{name}": declared but not used in the document')
    seen_events: set[str] = set()
    for index, raw in enumerate(event_elements):
        event = raw.strip()
        if not event:
            errors.append(f"interview event element {index + 1}: the name is empty")
        elif event in seen_events:
            errors.append(f'interview event element "{event}": declared more than once')
        seen_events.add(event)
    return DeclarationCheck(tuple(errors), tuple(warnings))
