"""The one error an answer set can raise: it says what is wrong and where."""

from __future__ import annotations

from docuhooks.errors import FieldError, ValidationFailed


class AnswerSetError(ValidationFailed, ValueError):
    """An answer set that cannot be read or built.

    `location` points at the offending part: a JSON path such as `answers[2].value[1]`, or
    for HotDocs XML the answer and element such as `Answer "Fee"/NumValue`. It is also a
    `ValidationFailed`, so the API turns it into a 422 with the location as the field, and a
    `ValueError`, so pure callers need not know the server's hierarchy.
    """

    def __init__(self, message: str, location: str = "") -> None:
        full = f"{location}: {message}" if location else message
        super().__init__(full, details=[FieldError(location or "body", message)])
        self.reason = message
        self.location = location
