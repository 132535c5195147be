"""Template documents: check that an upload is a DOCX and find its placeholders (SPEC §2).

Variable names may contain spaces ("Client Name"), Jinja identifiers may not. One rule maps
a name to the identifier a template uses, here and in assembly: every run of characters
that cannot be in an identifier becomes one `_`, and a name starting with a digit gets a
leading `_`. So `Client Name` is `{{ Client_Name }}`, `Child's Name` is `{{ Child_s_Name }}`,
`1st Party` is `{{ _1st_Party }}`.

Templates come from users, so they are parsed and rendered only in Jinja's sandbox.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import jinja2
from docxtpl import DocxTemplate
from jinja2.sandbox import SandboxedEnvironment

from docuhooks.answers.model import VariableDef

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


def sandboxed_environment() -> jinja2.Environment:
    """The Jinja environment every template is parsed and rendered with."""
    return SandboxedEnvironment(autoescape=True)


def inspect_template(docx_bytes: bytes) -> TemplateInfo:
    """Check that `docx_bytes` is a DOCX whose placeholders parse; list them.

    Raises `TemplateError` naming the missing part or giving Jinja's syntax error.
    """
    check_docx(docx_bytes)
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


def check_docx(docx_bytes: bytes) -> None:
    """A DOCX is a zip archive holding at least `[Content_Types].xml` and the main document."""
    try:
        with zipfile.ZipFile(io.BytesIO(docx_bytes)) as archive:
            names = set(archive.namelist())
    except zipfile.BadZipFile:
        raise TemplateError("not a DOCX: the file is not a zip archive") from None
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
