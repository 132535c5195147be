"""The receiver SDK: verify a call from docuhooks and answer it, in a few lines.

    from docuhooks_receiver import HmacSecret, Verifier, InterviewLoadEvent

    verifier = Verifier(secrets=[HmacSecret(os.environ["WEBHOOK_SECRET"])], audience=WEBHOOK_ID)
    event = verifier.verify(method, url, headers, body)   # raises VerificationError

It depends only on the standard library and PyJWT, never on the docuhooks server, so an
integrator's application can install it alone. Framework adapters live in
`docuhooks_receiver.fastapi` and `docuhooks_receiver.flask` and are imported only on demand.
"""

from docuhooks_receiver._errors import (
    BadSignature,
    MalformedRequest,
    MissingToken,
    TokenExpired,
    TokenNotYetValid,
    VerificationError,
    WrongAudience,
    WrongIssuer,
)
from docuhooks_receiver.answers import (
    ANSWER_TYPES,
    AnswerSetBuilder,
    shorthand,
    write_hotdocs_xml,
)
from docuhooks_receiver.credentials import AccessToken, HmacSecret, StandardWebhooksSecret
from docuhooks_receiver.events import (
    OPERATIONAL_EVENT_TYPES,
    CustomInterviewEvent,
    Document,
    InterviewLoadEvent,
    NewWorkItemVersionComplete,
    OperationalEvent,
    PostProcessingEvent,
    Template,
    User,
    WebhookEvent,
    WebhookSummary,
    WorkItem,
    parse_event,
)
from docuhooks_receiver.replies import PostProcessingResult, ReturnedDocument
from docuhooks_receiver.verify import DEFAULT_LEEWAY, AuthMethod, Verifier, verify_request

__all__ = [
    "ANSWER_TYPES",
    "DEFAULT_LEEWAY",
    "OPERATIONAL_EVENT_TYPES",
    "AccessToken",
    "AnswerSetBuilder",
    "AuthMethod",
    "BadSignature",
    "CustomInterviewEvent",
    "Document",
    "HmacSecret",
    "InterviewLoadEvent",
    "MalformedRequest",
    "MissingToken",
    "NewWorkItemVersionComplete",
    "OperationalEvent",
    "PostProcessingEvent",
    "PostProcessingResult",
    "ReturnedDocument",
    "StandardWebhooksSecret",
    "Template",
    "TokenExpired",
    "TokenNotYetValid",
    "User",
    "VerificationError",
    "Verifier",
    "WebhookEvent",
    "WebhookSummary",
    "WorkItem",
    "WrongAudience",
    "WrongIssuer",
    "parse_event",
    "shorthand",
    "verify_request",
    "write_hotdocs_xml",
]
