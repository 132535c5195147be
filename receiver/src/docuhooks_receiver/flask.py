"""A Flask decorator that verifies a docuhooks call and passes the view its typed event.

    verifier = Verifier(secrets=[HmacSecret(SECRET)], audience=WEBHOOK_ID)

    @app.post("/hooks")
    @verified(verifier)
    def hook(event: WebhookEvent): ...

A request that fails verification never reaches the view: it is answered with the error's
status (401, or 400 for a malformed request) and `{"error": {"code", "message"}}`, which the
platform records in the delivery log where an administrator can read why it was refused.
Install with the `flask` extra.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from flask import Response, jsonify, request

from docuhooks_receiver._errors import VerificationError
from docuhooks_receiver.events import WebhookEvent
from docuhooks_receiver.verify import Verifier

P = ParamSpec("P")
R = TypeVar("R")


def verified(
    verifier: Verifier,
) -> Callable[[Callable[Concatenate[WebhookEvent, P], R]], Callable[P, R | tuple[Response, int]]]:
    """Decorate a view so it is called with the verified event as its first argument."""

    def decorate(
        view: Callable[Concatenate[WebhookEvent, P], R],
    ) -> Callable[P, R | tuple[Response, int]]:
        @functools.wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | tuple[Response, int]:
            try:
                event = verifier.verify(
                    request.method,
                    "?" + request.query_string.decode("latin-1"),
                    dict(request.headers.items()),
                    request.get_data() or None,
                )
            except VerificationError as exc:
                error = {"code": type(exc).__name__, "message": str(exc)}
                return jsonify(error=error), exc.status_code
            return view(event, *args, **kwargs)

        return wrapper

    return decorate
