"""A docuhooks receiver in Flask that verifies and answers all four event types,
and takes the operational events.

Run it (one endpoint may serve several webhooks: list their secrets and ids):

    DOCUHOOKS_WEBHOOK_SECRETS=<secret>[,<secret>...] \\
    DOCUHOOKS_WEBHOOK_AUTH_METHOD=HMAC \\
    DOCUHOOKS_WEBHOOK_IDS=<webhook id>[,<webhook id>...] \\
    PORT=8001 python examples/receiver_flask.py

and point the webhooks at http://127.0.0.1:8001/hooks. Needs the receiver SDK with Flask:
`pip install './receiver[flask]'` from a docuhooks checkout.
"""

from __future__ import annotations

import logging
import os
import re
from datetime import date

from flask import Flask, Response
from flask.typing import ResponseReturnValue

from docuhooks_receiver import (
    AnswerSetBuilder,
    AuthMethod,
    CustomInterviewEvent,
    InterviewLoadEvent,
    NewWorkItemVersionComplete,
    OperationalEvent,
    PostProcessingEvent,
    PostProcessingResult,
    Verifier,
    WebhookEvent,
)
from docuhooks_receiver.flask import verified

log = logging.getLogger("receiver")


class RedactTokens(logging.Filter):
    """An HMAC webhook sent as GET carries its signed JWT in the query string (`?token=…`),
    a credential until it expires; the server's access log prints each request's target.
    Keep the token out of the log, as `docuhooks listen` does."""

    TOKEN = re.compile(r"(\btoken=)[^&\s\"]+")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                self.TOKEN.sub(r"\1[redacted]", arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        return True


def create_app(verifier: Verifier) -> Flask:
    app = Flask(__name__)

    @app.route("/hooks", methods=["GET", "POST"])
    @verified(verifier)
    def hook(event: WebhookEvent) -> ResponseReturnValue:
        if isinstance(event, NewWorkItemVersionComplete):
            # A notification: store the fact and fetch the documents later from their `url`.
            # Deliveries are at least once, so de-duplicate on event.event_id.
            names = ", ".join(document.file_name for document in event.documents)
            log.info(
                "version %s of %s is complete: %s",
                event.work_item.version_number,
                event.work_item.name,
                names,
            )
            return "", 204
        if isinstance(event, InterviewLoadEvent):
            # Prefill the interview: answer JSON, overlaid before the user starts.
            answers = AnswerSetBuilder().text("Client Name", event.user.name)
            return answers.date("Start Date", date.today()).to_json(), 200
        if isinstance(event, CustomInterviewEvent):
            if event.interview_event_name != "Look up client":
                return "", 204  # no answers
            # Answers may also go back as HotDocs answer XML.
            xml = AnswerSetBuilder().number("Fee", 1500).truefalse("Is Company", False).to_xml()
            return Response(xml, status=200, mimetype="application/xml")
        if isinstance(event, PostProcessingEvent):
            result = PostProcessingResult()
            for document in event.documents:
                if document.content is not None:
                    # Stamp, sign or convert the bytes here; this example returns them as they are.
                    result.replace(
                        document.id,
                        document.name,
                        document.file_name,
                        document.content_type,
                        document.content,
                    )
            return result.to_dict(), 200
        if isinstance(event, OperationalEvent):
            # The platform about its own webhooks (a SiteAdministrator subscribes to these):
            # tell whoever runs the receivers. `event.data` has each type's details.
            about = event.webhook.name if event.webhook else event.destination
            log.warning("%s: %s", event.event_type, about)
            return "", 204
        raise AssertionError(f"unhandled event type {type(event).__name__}")

    return app


def auth_method_from_environment() -> AuthMethod:
    """DOCUHOOKS_WEBHOOK_AUTH_METHOD, in any letter case (`hmac`, `access_token` too)."""
    try:
        return AuthMethod.named(os.environ.get("DOCUHOOKS_WEBHOOK_AUTH_METHOD", "HMAC"))
    except ValueError as exc:
        raise SystemExit(f"DOCUHOOKS_WEBHOOK_AUTH_METHOD {exc}") from None


def verifier_from_environment() -> Verifier:
    secrets = [s for s in os.environ.get("DOCUHOOKS_WEBHOOK_SECRETS", "").split(",") if s]
    if not secrets:
        raise SystemExit("set DOCUHOOKS_WEBHOOK_SECRETS to the webhook's secret (or several)")
    ids = [i for i in os.environ.get("DOCUHOOKS_WEBHOOK_IDS", "").split(",") if i]
    # The secrets are all of this one method, so none can verify a request of another.
    method = auth_method_from_environment()
    try:
        return Verifier(secrets=secrets, audience=ids or None, auth_method=method)
    except ValueError as exc:  # a blank secret, a whsec_ secret for HMAC
        raise SystemExit(f"DOCUHOOKS_WEBHOOK_SECRETS / _AUTH_METHOD: {exc}") from None


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    logging.getLogger("werkzeug").addFilter(RedactTokens())  # the development server's log
    app = create_app(verifier_from_environment())
    app.run(host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ.get("PORT", "8001")))
