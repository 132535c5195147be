"""examples/node-receiver, the receiver in Node that docs/receiving.md shows, verifies real calls
signed by docuhooks for every authentication method, answers each event type, and refuses a
call whose signature or token is wrong.

The example is copied to a temporary folder and its packages installed there with `npm ci`
(from the committed package-lock.json), so the checkout never holds node_modules. Without
Node.js and npm this skips and says why, except in CI (`CI=true`) or with
`DOCUHOOKS_REQUIRE_NODE=1`, where their absence is a failure."""

from __future__ import annotations

import base64
import dataclasses
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from live_receivers import LiveReceiver
from receiver_samples import PDF, WEBHOOK_ID, target

from docuhooks.core.events import AuthMethod, EventType, Verb
from docuhooks.core.signing import OutboundRequest, SigningSecret, WebhookTarget

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "node-receiver"


def _require_node() -> tuple[str, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node and npm:
        return node, npm
    reason = "Node.js and npm are not installed (the Node receiver example needs them)"
    if os.environ.get("CI") == "true" or os.environ.get("DOCUHOOKS_REQUIRE_NODE") == "1":
        pytest.fail(f"the Node example is tested here, but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    node, npm = _require_node()
    folder = tmp_path_factory.mktemp("node") / "node-receiver"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("node_modules"))
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return node, folder


HMAC = target(AuthMethod.HMAC)
HMAC_GET = target(AuthMethod.HMAC, Verb.GET)
ROTATING = target(AuthMethod.HMAC, rotating=True)  # signed with its previous secret
WHSEC = target(AuthMethod.STANDARD_WEBHOOKS)
ACCESS = target(AuthMethod.ACCESS_TOKEN)
ACCESS_GET = target(AuthMethod.ACCESS_TOKEN, Verb.GET)


def _value(secret: SigningSecret | None) -> str:
    assert secret is not None
    return secret.value


@pytest.fixture(scope="module")
def receiver(installed: tuple[str, Path]) -> Iterator[LiveReceiver]:
    node, folder = installed
    hmac_secrets = [_value(HMAC.secret), _value(HMAC_GET.secret), _value(ROTATING.previous_secret)]
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "PORT": "0",
        "DOCUHOOKS_HMAC_SECRETS": ",".join(hmac_secrets),
        "DOCUHOOKS_WHSEC_SECRETS": _value(WHSEC.secret),
        "DOCUHOOKS_ACCESS_TOKENS": str(ACCESS.access_token),
        "DOCUHOOKS_WEBHOOK_IDS": WEBHOOK_ID,
    }
    live = LiveReceiver([node, "server.mjs"], environment, folder)
    yield live
    live.close()


@pytest.mark.parametrize(
    ("webhook", "method"),
    [
        (HMAC, "HMAC"),
        (HMAC_GET, "HMAC"),
        (ROTATING, "HMAC"),
        (WHSEC, "StandardWebhooks"),
        (ACCESS, "AccessToken"),
        (ACCESS_GET, "AccessToken"),
    ],
    ids=["hmac-post", "hmac-get", "hmac-rotating", "standard-webhooks", "token-post", "token-get"],
)
def test_the_node_example_verifies_and_answers_every_event_type(
    receiver: LiveReceiver, webhook: WebhookTarget, method: str
) -> None:
    reply = receiver.deliver(EventType.NEW_WORK_ITEM_VERSION_COMPLETE, webhook)
    assert reply.status == 204, reply.body
    assert reply.log == {
        "verified": True,
        "authMethod": method,
        "eventType": "NewWorkItemVersionComplete",
        "eventId": "ee000000-0000-4000-8000-000000000007",
    }

    reply = receiver.deliver(EventType.INTERVIEW_LOAD_EVENT, webhook)
    assert (reply.status, reply.content_type) == (200, "application/json"), reply.body
    assert reply.json()["answers"][0] == {"name": "Client Name", "type": "text", "value": "Ann Lee"}

    if webhook is ACCESS_GET:
        return  # a GET carries no nested data: no lookup name, no documents
    reply = receiver.deliver(EventType.CUSTOM_INTERVIEW_EVENT, webhook)
    assert reply.status == 200, reply.body
    assert reply.json()["answers"][0]["value"] == "1 High Street"

    if webhook is HMAC_GET:
        return  # post-processing is POST only
    reply = receiver.deliver(EventType.POST_PROCESSING_EVENT, webhook)
    assert reply.status == 200, reply.body
    (document,) = reply.json()["documents"]
    assert document["action"] == "replace"
    assert base64.b64decode(document["content"]) == PDF


STRANGERS = [
    (target(AuthMethod.HMAC), "BadSignature"),
    (target(AuthMethod.HMAC, Verb.GET), "BadSignature"),
    (target(AuthMethod.STANDARD_WEBHOOKS), "BadSignature"),
    (dataclasses.replace(ACCESS, access_token="somebody-elses-token-0123456789"), "BadSignature"),
]


@pytest.mark.parametrize(
    ("webhook", "code"), STRANGERS, ids=["hmac-post", "hmac-get", "standard-webhooks", "token"]
)
def test_the_node_example_refuses_a_wrong_signature(
    receiver: LiveReceiver, webhook: WebhookTarget, code: str
) -> None:
    """Signed with a secret the receiver does not hold: refused with the reason, never
    answered as a verified call."""
    reply = receiver.deliver(EventType.INTERVIEW_LOAD_EVENT, webhook)
    assert reply.status == 401, reply.body
    assert reply.json()["error"]["code"] == code
    assert reply.log["verified"] is False and reply.log["code"] == code


def test_the_node_example_refuses_a_token_for_another_webhook(receiver: LiveReceiver) -> None:
    """Signed with a secret the receiver holds, but addressed to another webhook (its `aud`)."""
    elsewhere = dataclasses.replace(HMAC, webhook_id="another-webhook")
    reply = receiver.deliver(EventType.INTERVIEW_LOAD_EVENT, elsewhere)
    assert reply.status == 401, reply.body
    assert reply.log == {
        "verified": False,
        "code": "WrongAudience",
        "message": reply.json()["error"]["message"],
    }


def test_the_node_example_keeps_methods_apart(receiver: LiveReceiver) -> None:
    """The access token, which travels in clear, cannot sign an HMAC token the example
    accepts: each method is checked only against its own secrets."""
    forged = dataclasses.replace(
        HMAC, secret=SigningSecret(kid="forged", value=str(ACCESS.access_token))
    )
    reply = receiver.deliver(EventType.INTERVIEW_LOAD_EVENT, forged)
    assert reply.status == 401 and reply.log["code"] == "BadSignature"


def test_the_node_example_refuses_a_call_without_credentials(receiver: LiveReceiver) -> None:
    reply = receiver.send(OutboundRequest("POST", receiver.url, {}, b"{}"))
    assert reply.status == 401 and reply.log["code"] == "MissingToken"


def test_the_node_example_without_secrets_says_what_to_set(
    installed: tuple[str, Path],
) -> None:
    node, folder = installed
    result = subprocess.run(
        [node, "server.mjs"],
        cwd=folder,
        env={"PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "set DOCUHOOKS_HMAC_SECRETS" in result.stderr


def test_the_node_snippets_in_the_guide_are_the_examples_own_code() -> None:
    """docs/receiving.md quotes the example's verification code; the tests above run it."""
    guide = (EXAMPLE.parents[1] / "docs" / "receiving.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```js\n(.*?)^```", guide, flags=re.S | re.M)
    assert len(blocks) == 3, "the guide shows one snippet per authentication method"
    source = (EXAMPLE / "server.mjs").read_text(encoding="utf-8")
    for block in blocks:
        assert block in source, f"the guide's snippet is not in server.mjs:\n{block}"
