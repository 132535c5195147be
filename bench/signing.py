"""Sign and verify operations per second for each authentication method, on one core.

    .venv/bin/python bench/signing.py [--seconds 1.0] [--rounds 3]

Signing is `build_request` (the whole ready request, as the worker calls it); verifying is
`Verifier.verify` (the whole typed event, as a receiver calls it). Both are compared with the
same run's raw `hmac.new(key, msg, sha256).digest()` on a message of the size the JWT signs, so
the ratio shows what the JSON, base64 and header work costs over the one unavoidable HMAC.
The process is pinned to one CPU where the OS allows it; the best round of each is reported.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from docuhooks.core.clock import utcnow
from docuhooks.core.events import Actor, AuthMethod, Event, EventType, Verb
from docuhooks.core.signing import (
    OutboundRequest,
    WebhookTarget,
    build_request,
    generate_secret,
)
from docuhooks_receiver import AccessToken, HmacSecret, StandardWebhooksSecret, Verifier
from docuhooks_receiver.credentials import Secret

WEBHOOK_ID = str(uuid.uuid4())
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"

SHAPES = [
    (AuthMethod.HMAC, Verb.POST),
    (AuthMethod.HMAC, Verb.GET),
    (AuthMethod.ACCESS_TOKEN, Verb.POST),
    (AuthMethod.STANDARD_WEBHOOKS, Verb.POST),
]


def notification() -> dict[str, Any]:
    """A typical NewWorkItemVersionComplete: one work item version with two documents."""

    def document(name: str) -> dict[str, Any]:
        return {
            "id": str(uuid.uuid4()),
            "name": name,
            "fileName": f"{name.lower()}.docx",
            "contentType": DOCX,
            "size": 48213,
            "sha256": "3f" * 32,
            "url": f"https://acme.example/api/v1/workitems/{uuid.uuid4()}/documents/x/content",
        }

    data = {
        "workItemId": str(uuid.uuid4()),
        "workItemName": "Lease for Jane Example",
        "workItemVersionId": str(uuid.uuid4()),
        "versionNumber": 3,
        "workGroupId": str(uuid.uuid4()),
        "templateId": str(uuid.uuid4()),
        "templateName": "Residential lease",
        "documents": [document("Lease"), document("Schedule")],
    }
    actor = Actor(str(uuid.uuid4()), "ann@example.com", "Ann Lee", "ann@example.com")
    return Event(
        EventType.NEW_WORK_ITEM_VERSION_COMPLETE,
        str(uuid.uuid4()),
        actor,
        data,
        created_date=utcnow(),
    ).to_dict()


def target(method: AuthMethod, verb: Verb) -> tuple[WebhookTarget, list[Secret]]:
    """A webhook for `method`, and the secrets its receiver is configured with."""
    secret = None if method is AuthMethod.ACCESS_TOKEN else generate_secret(method)
    webhook = WebhookTarget(
        webhook_id=WEBHOOK_ID,
        url="https://receiver.example/hooks?tenant=acme",
        verb=verb,
        auth_method=method,
        issuer="https://acme.example",
        secret=secret,
        access_token="legacy-access-token-0123456789abcdef" if secret is None else None,
    )
    if secret is None:
        return webhook, [AccessToken("legacy-access-token-0123456789abcdef")]
    kind = HmacSecret if method is AuthMethod.HMAC else StandardWebhooksSecret
    return webhook, [kind(secret.value)]


def rate(operation: Callable[[], object], seconds: float, rounds: int) -> float:
    best = 0.0
    for _ in range(rounds):
        count, started = 0, time.perf_counter()
        deadline = started + seconds
        while True:
            for _ in range(200):
                operation()
            count += 200
            now = time.perf_counter()
            if now >= deadline:
                break
        best = max(best, count / (now - started))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per measurement")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

    event = notification()
    now = datetime.now(UTC)

    rows = []
    for method, verb in SHAPES:
        webhook, secrets = target(method, verb)
        verifier = Verifier(secrets=secrets, audience=WEBHOOK_ID)

        def sign(webhook: WebhookTarget = webhook) -> OutboundRequest:
            return build_request(
                event, webhook, delivery_id="d", attempt=1, now=now, user_agent="docuhooks/bench"
            )

        request = sign()
        verifier.verify(request.method, request.url, request.headers, request.body)

        def verify(verifier: Verifier = verifier, request: OutboundRequest = request) -> object:
            return verifier.verify(request.method, request.url, request.headers, request.body)

        rows.append(
            (
                f"{method.value} {verb.value}",
                rate(sign, args.seconds, args.rounds),
                rate(verify, args.seconds, args.rounds),
            )
        )

    hmac_request = build_request(
        event,
        target(AuthMethod.HMAC, Verb.POST)[0],
        delivery_id="d",
        attempt=1,
        now=now,
        user_agent="b",
    )
    assert hmac_request.body is not None
    signing_input = hmac_request.body.removeprefix(b"token=").rpartition(b".")[0]
    key = os.urandom(32)
    raw = rate(
        lambda: hmac.new(key, signing_input, hashlib.sha256).digest(), args.seconds, args.rounds
    )

    print(f"raw hmac-sha256 over {len(signing_input)} bytes: {raw:,.0f} ops/s (baseline)\n")
    print(f"{'method':<22}{'sign ops/s':>12}{'verify ops/s':>14}{'sign/raw':>10}{'verify/raw':>12}")
    for name, signed, verified in rows:
        print(
            f"{name:<22}{signed:>12,.0f}{verified:>14,.0f}{signed / raw:>10.3f}"
            f"{verified / raw:>12.3f}"
        )
    hmac_sign = rows[0][1]
    verdict = "meets" if hmac_sign >= 20_000 else "MISSES"
    print(f"\nHMAC signing {verdict} the 20,000 ops/s target ({hmac_sign:,.0f} ops/s)")


if __name__ == "__main__":
    main()
