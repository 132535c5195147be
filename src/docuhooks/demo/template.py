"""The demo's sample template: an engagement letter with one variable of every kind.

Built with python-docx at run time rather than shipped as a binary, so what the template
holds can be read here: a date, the client's name, a yes/no, a multiple choice, a fee and a
repeated list of contacts, plus the "Look up client" interview event element.
"""

from __future__ import annotations

import io
from typing import Any

from docx import Document

NAME = "Engagement letter"
FILE_NAME = "engagement-letter.docx"
LOOKUP_BUTTON = "Look up client"

VARIABLES: list[dict[str, Any]] = [
    {"name": "Client Name", "type": "text"},
    {"name": "Letter Date", "type": "date"},
    {"name": "Is Company", "type": "truefalse"},
    {
        "name": "Services",
        "type": "multiplechoice",
        "options": ["Tax returns", "Bookkeeping", "Payroll", "Audit"],
    },
    {"name": "Fee", "type": "number"},
    {"name": "Contact Name", "type": "text", "repeatDepth": 1},
]

_PARAGRAPHS = (
    "{{ Letter_Date }}",
    "Dear {{ Client_Name }},",
    "Thank you for choosing Lee & Haddad. "
    "{% if Is_Company %}As a company client, your account is managed by our business team."
    "{% else %}As a private client, you have one accountant who knows your affairs."
    "{% endif %}",
    "We will take care of: {{ Services }}.",
    "Our fee is EUR {{ Fee }} a year, invoiced quarterly.",
    "Your contacts here:",
)
_CONTACT_ROWS = (
    ("#", "Contact"),
    ("{%tr for contact in Contact_Name %}", ""),
    ("{{ loop.index }}", "{{ contact }}"),
    ("{%tr endfor %}", ""),
)


def definition() -> dict[str, Any]:
    """The `definition` form field of the template upload (docs/platform.md)."""
    return {"name": NAME, "variables": VARIABLES, "eventElements": [LOOKUP_BUTTON]}


def build_docx() -> bytes:
    document = Document()
    document.add_heading("Engagement letter", level=1)
    for text in _PARAGRAPHS:
        document.add_paragraph(text)
    table = document.add_table(rows=len(_CONTACT_ROWS), cols=2)
    for row, cells in zip(table.rows, _CONTACT_ROWS, strict=True):
        for cell, text in zip(row.cells, cells, strict=True):
            cell.text = text
    document.add_paragraph("Yours sincerely,")
    document.add_paragraph("Ann Lee")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()
