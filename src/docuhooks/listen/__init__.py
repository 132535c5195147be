"""`docuhooks listen`: a local receiver that verifies, prints and answers webhook calls.

It is built the way an integrator's receiver would be: the receiver SDK (`docuhooks_receiver`)
verifies each request and types its event, and the standard library's HTTP server carries it.
Nothing here reaches into the server, so what it shows is what a real receiver would see.

`answers` reads the answer file, `listener` decides each reply, `report` prints what came in,
`server` is the HTTP server; `build_listener` and `run` are what the command calls.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from docuhooks.listen.answers import ANY_EVENT, AnswerFile, AnswerReply, ListenError, Lookup
from docuhooks.listen.listener import Listener, PostProcessingMode, Reply
from docuhooks.listen.report import Printer, Received
from docuhooks.listen.server import MAX_BODY_BYTES, ListenServer
from docuhooks_receiver import AccessToken, HmacSecret, StandardWebhooksSecret, Verifier
from docuhooks_receiver.credentials import WHSEC_PREFIX, Secret

__all__ = [
    "ANY_EVENT",
    "MAX_BODY_BYTES",
    "AnswerFile",
    "AnswerReply",
    "ListenError",
    "ListenServer",
    "Listener",
    "Lookup",
    "PostProcessingMode",
    "Printer",
    "Received",
    "Reply",
    "build_listener",
    "run",
]


def build_listener(
    *,
    secrets: Sequence[str] = (),
    secret_file: str | Path | None = None,
    hmac_secrets: Sequence[str] = (),
    whsec_secrets: Sequence[str] = (),
    access_tokens: Sequence[str] = (),
    webhook_ids: Sequence[str] = (),
    auth_method: str | None = None,
    issuer: str | None = None,
    answers_file: str | Path | None = None,
    notification_status: int = 204,
    retry_after: int | None = None,
    post_processing: PostProcessingMode = "passthrough",
    api_token: str | None = None,
) -> Listener:
    """A listener from command-line style options; ListenError says what cannot be used.

    `secrets` and the file's lines are of the method `auth_method` names (or `whsec_` secrets
    without it); the other three lists are typed, so they may be mixed. The SDK's Verifier
    refuses (ValueError) a plain secret it cannot type, a blank one, or one of the wrong kind.
    """
    all_secrets: list[Secret | str] = list(secrets)
    if secret_file is not None:
        try:
            lines = Path(secret_file).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ListenError(f"secret file {secret_file}: {exc.strerror or exc}") from None
        all_secrets += [line.strip() for line in lines if line.strip()]
    if auth_method is None and any(
        isinstance(value, str) and value.strip() and not value.strip().startswith(WHSEC_PREFIX)
        for value in all_secrets
    ):
        # The SDK would refuse it too, in words for code (HmacSecret(...)); these are the CLI's.
        raise ListenError(
            "a --secret (or --secret-file line) not starting with whsec_ could be an HMAC "
            "secret or an access token: give it with --hmac-secret or --access-token instead, "
            "or say which with --auth-method HMAC (or AccessToken)"
        )
    all_secrets += [HmacSecret(value) for value in hmac_secrets]
    all_secrets += [StandardWebhooksSecret(value) for value in whsec_secrets]
    all_secrets += [AccessToken(value) for value in access_tokens]
    if not all_secrets:
        raise ListenError(
            "give the webhook's secret with --hmac-secret, --whsec-secret or --access-token, "
            "or with --secret (or a file of them, one a line, with --secret-file) and "
            "--auth-method"
        )
    audience = list(webhook_ids) or None
    # One Verifier holds every secret; each is typed, and only checks requests of its method.
    verifier = Verifier(
        secrets=all_secrets, audience=audience, auth_method=auth_method, issuer=issuer
    )
    return Listener(
        verifier=verifier,
        answers=AnswerFile.load(answers_file) if answers_file is not None else None,
        notification_status=notification_status,
        retry_after=retry_after,
        post_processing=post_processing,
        api_token=api_token,
    )


def run(listener: Listener, *, host: str, port: int, as_json: bool = False) -> None:
    """Serve until Ctrl-C, printing every request on stdout (JSON lines with `as_json`)."""
    printer = Printer(as_json=as_json)
    listener.on_request = printer.received
    listener.on_note = printer.note
    try:
        server = ListenServer(host, port, listener)
    except OSError as exc:
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    verifier = listener.verifier
    audience = verifier.audience or "any webhook (no --webhook-id: audience not checked)"
    secrets = len(verifier.secrets)
    # The banner goes to stderr in JSON mode, so stdout stays one JSON object a line.
    print(
        f"listening on {server.url} with {secrets} secret(s) for {audience}; Ctrl-C stops",
        file=sys.stderr if as_json else sys.stdout,
        flush=True,
    )
    if threading.current_thread() is threading.main_thread():
        # A service manager's SIGTERM stops it as cleanly as Ctrl-C does.
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    print("stopped", file=sys.stderr, flush=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
