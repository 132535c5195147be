"""Build template DOCX files with python-docx, for tests here and in the end-to-end suite.

`standard_template()` has one placeholder of every type and a repeated table row:

    Client: {{ Client_Name }}
    Fee: {{ Fee }}
    Start: {{ Start_Date }}
    {% if Is_Company %}Company client{% else %}Individual client{% endif %}
    Colours: {{ Colours }}
    | #                               | Child          |
    | {%tr for child in Child_Name %} |                |
    | {{ loop.index }}                | {{ child }}    |
    | {%tr endfor %}                  |                |
"""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence

from docx import Document

from docuhooks.answers import AnswerType, VariableDef

STANDARD_PARAGRAPHS = (
    "Client: {{ Client_Name }}",
    "Fee: {{ Fee }}",
    "Start: {{ Start_Date }}",
    "{% if Is_Company %}Company client{% else %}Individual client{% endif %}",
    "Colours: {{ Colours }}",
)
STANDARD_VARIABLES = (
    VariableDef("Client Name", AnswerType.TEXT),
    VariableDef("Fee", AnswerType.NUMBER),
    VariableDef("Start Date", AnswerType.DATE),
    VariableDef("Is Company", AnswerType.TRUEFALSE),
    VariableDef("Colours", AnswerType.MULTIPLECHOICE, options=("Red", "Green", "Blue")),
    VariableDef("Child Name", AnswerType.TEXT, repeat_depth=1),
)


def make_docx(paragraphs: Sequence[str] = (), table_rows: Sequence[Sequence[str]] = ()) -> bytes:
    """A DOCX with one paragraph per string, then (if given) a table with these rows."""
    document = Document()
    for text in paragraphs:
        document.add_paragraph(text)
    if table_rows:
        columns = max(len(row) for row in table_rows)
        table = document.add_table(rows=len(table_rows), cols=columns)
        for row, cells in zip(table.rows, table_rows, strict=True):
            for cell, text in zip(row.cells, cells, strict=False):
                cell.text = text
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


@functools.cache
def standard_template() -> bytes:
    """The template described in the module docstring; declare it with STANDARD_VARIABLES.

    Built once: a DOCX holds save times, so two builds a second apart differ byte for byte."""
    return make_docx(
        STANDARD_PARAGRAPHS,
        [
            ["#", "Child"],
            ["{%tr for child in Child_Name %}", ""],
            ["{{ loop.index }}", "{{ child }}"],
            ["{%tr endfor %}", ""],
        ],
    )


def document_text(docx_bytes: bytes) -> tuple[list[str], list[list[list[str]]]]:
    """The paragraph texts and, per table, the cell texts of each row."""
    document = Document(io.BytesIO(docx_bytes))
    paragraphs = [paragraph.text for paragraph in document.paragraphs]
    tables = [
        [[cell.text for cell in row.cells] for row in table.rows] for table in document.tables
    ]
    return paragraphs, tables
