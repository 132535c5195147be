"""Sample events of all four types, and webhook targets for each method, shared by the tests."""

from __future__ import annotations

import base64
import copy
from datetime import UTC, datetime
from typing import Any

from docuhooks.core.events import OPERATIONAL_EVENTS, Actor, AuthMethod, Event, EventType, Verb
from docuhooks.core.operational import sample_data
from docuhooks.core.signing import SigningSecret, WebhookTarget, generate_secret
from docuhooks_receiver import AccessToken, HmacSecret, StandardWebhooksSecret
from docuhooks_receiver.credentials import Secret

WEBHOOK_ID = "5d4f2a3e-0b7c-4a55-9b4e-1f1f7d0e2c11"
ISSUER = "https://acme.docuhooks.example"
NOW = datetime(2026, 11, 29, 10, 15, 0, tzinfo=UTC)
ANN = Actor(
    id="0f9d7c1e-5f6a-4d7b-8e1c-2a3b4c5d6e7f",
    login_name="ann@example.com",
    name="Ann Lee",
    email="ann@example.com",
)
PDF = b"%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


def _document(content: bytes | None = None) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": "d0c5d0c5-0000-4000-8000-000000000001",
        "name": "Lease",
        "fileName": "lease.pdf",
        "contentType": "application/pdf",
        "size": len(PDF),
        "sha256": "9" * 64,
        "url": f"{ISSUER}/api/v1/workitems/w1/versions/v2/documents/d1/content",
    }
    if content is not None:
        document["content"] = base64.b64encode(content).decode("ascii")
    return document


_WORK_ITEM = {
    "workItemId": "a1a1a1a1-0000-4000-8000-000000000001",
    "workItemVersionId": "b2b2b2b2-0000-4000-8000-000000000002",
    "templateId": "c3c3c3c3-0000-4000-8000-000000000003",
    "templateName": "Residential lease",
}
_INTERVIEW = {
    **_WORK_ITEM,
    "interviewId": "e4e4e4e4-0000-4000-8000-000000000004",
    "workItemName": "Lease for Jane",
    "workGroupId": "f5f5f5f5-0000-4000-8000-000000000005",
}
DATA: dict[EventType, dict[str, Any]] = {
    EventType.NEW_WORK_ITEM_VERSION_COMPLETE: {
        **_WORK_ITEM,
        "workItemName": "Lease for Jane",
        "versionNumber": 2,
        "workGroupId": "f5f5f5f5-0000-4000-8000-000000000005",
        "documents": [_document()],
    },
    EventType.INTERVIEW_LOAD_EVENT: dict(_INTERVIEW),
    EventType.CUSTOM_INTERVIEW_EVENT: {
        **_INTERVIEW,
        "interviewEventName": "Look up client",
        "answers": {"answers": [{"name": "Client Name", "type": "text", "value": "Jane"}]},
    },
    EventType.POST_PROCESSING_EVENT: {
        **_WORK_ITEM,
        "versionNumber": 2,
        "documents": [_document(PDF)],
        "callbackDeadline": "2026-11-29T10:25:00.000000Z",
        "completeUrl": f"{ISSUER}/api/v1/workitems/w1/versions/v2/complete",
    },
}


DATA.update({event_type: sample_data(event_type, NOW) for event_type in OPERATIONAL_EVENTS})


def sample_event(event_type: EventType, *, test: bool = False) -> dict[str, Any]:
    """A fresh copy each time, so a test that spoils one cannot spoil the next."""
    return Event(
        event_type=event_type,
        site_id="51e51e51-0000-4000-8000-000000000006",
        created_by=ANN,
        data=copy.deepcopy(DATA[event_type]),
        event_id="ee000000-0000-4000-8000-000000000007",
        created_date=NOW,
        test=test,
    ).to_dict()


def target(
    auth_method: AuthMethod,
    verb: Verb = Verb.POST,
    *,
    url: str = "https://receiver.example/hooks",
    rotating: bool = False,
) -> WebhookTarget:
    secret = None if auth_method is AuthMethod.ACCESS_TOKEN else generate_secret(auth_method)
    previous: SigningSecret | None = None
    if rotating and auth_method is not AuthMethod.ACCESS_TOKEN:
        previous = generate_secret(auth_method)
    return WebhookTarget(
        webhook_id=WEBHOOK_ID,
        url=url,
        verb=verb,
        auth_method=auth_method,
        issuer=ISSUER,
        secret=secret,
        previous_secret=previous,
        access_token="legacy-token-0123456789" if secret is None else None,
    )


def accepted_secrets(webhook: WebhookTarget) -> list[Secret]:
    """What the receiver is configured with for `webhook`: every secret it may be signed with,
    typed by the webhook's method."""
    if webhook.access_token is not None:
        return [AccessToken(webhook.access_token)]
    kind = HmacSecret if webhook.auth_method is AuthMethod.HMAC else StandardWebhooksSecret
    return [kind(s.value) for s in (webhook.secret, webhook.previous_secret) if s is not None]
