"""What the interview hook tests share: platform rows (made directly, for engine tests, or
through the API, for end-to-end tests), webhooks, and loopback receivers that verify each
call with the receiver SDK before answering it."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import ipaddress
import json
import socket
import ssl
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import sqlalchemy as sa
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tests.platform.docx_factory import STANDARD_VARIABLES, standard_template
from tests.support import SiteUsers

from docuhooks.context import AppContext
from docuhooks.identity import service as identity
from docuhooks.identity.models import Principal
from docuhooks.platform.catalog import variable_to_json
from docuhooks.receiver import Verifier, WebhookEvent
from docuhooks.store.schema import templates, work_groups, work_items
from docuhooks.webhooks import service as webhooks

VARIABLES = [
    {"name": name, "type": kind, "repeatDepth": depth, "options": options}
    for name, kind, depth, options in (
        ("Client Name", "text", 0, []),
        ("Client Email", "text", 0, []),
        ("Client Address", "text", 0, []),
        ("Customer Number", "text", 0, []),
        ("Fee", "number", 0, []),
        ("Start", "date", 0, []),
        ("Urgent", "truefalse", 0, []),
        ("Parties", "text", 1, []),
        ("Colour", "multiplechoice", 0, ["Red", "Blue"]),
    )
]


@dataclass(frozen=True)
class Platform:
    """A work group, a template and a work item in one site, as the engine is given them."""

    principal: Principal
    work_item: dict[str, Any]
    template: dict[str, Any]
    version_id: str
    interview_id: str


async def make_platform(ctx: AppContext, site: SiteUsers, role: str = "User") -> Platform:
    now = ctx.now()
    group_id, template_id, item_id = (str(uuid.uuid4()) for _ in range(3))
    async with ctx.db.transaction() as conn:
        principal = await identity.authenticate_token(conn, site.tokens[role], now=ctx.now())
        assert principal is not None
        await conn.execute(
            work_groups.insert().values(
                id=group_id, site_id=site.site_id, name=f"Matters {group_id[:8]}", created_at=now
            )
        )
        content = b"not inspected by the engine"
        await conn.execute(
            templates.insert().values(
                id=template_id,
                site_id=site.site_id,
                name=f"Engagement {template_id[:8]}",
                file_name="engagement.docx",
                content=content,
                sha256=hashlib.sha256(content).hexdigest(),
                variables=VARIABLES,
                event_elements=["Look up client"],
                created_at=now,
            )
        )
        await conn.execute(
            work_items.insert().values(
                id=item_id,
                site_id=site.site_id,
                work_group_id=group_id,
                template_id=template_id,
                name="Smith engagement",
                created_at=now,
            )
        )
        template = (
            await conn.execute(sa.select(templates).where(templates.c.id == template_id))
        ).one()
        item = (await conn.execute(sa.select(work_items).where(work_items.c.id == item_id))).one()
    return Platform(
        principal=principal,
        work_item=dict(item._mapping),
        template=dict(template._mapping),
        version_id=str(uuid.uuid4()),
        interview_id=str(uuid.uuid4()),
    )


@dataclass(frozen=True)
class Hook:
    id: str
    name: str
    secret: str | None
    access_token: str | None

    def verifier(self) -> Verifier:
        secret = self.secret or self.access_token
        assert secret is not None
        return Verifier(secrets=[secret], audience=self.id, auth_method=self.auth_method)

    @property
    def auth_method(self) -> str:
        """The hook's method, as its secret shows it; a receiver's secrets are typed by it."""
        if self.access_token is not None:
            return "AccessToken"
        assert self.secret is not None
        return "StandardWebhooks" if self.secret.startswith("whsec_") else "HMAC"


async def make_hook(
    ctx: AppContext,
    site: SiteUsers,
    url: str,
    *,
    event_type: str = "InterviewLoadEvent",
    **fields: Any,
) -> Hook:
    async with ctx.db.transaction() as conn:
        admin = await identity.authenticate_token(
            conn, site.tokens["SiteAdministrator"], now=ctx.now()
        )
        assert admin is not None
        changes: dict[str, Any] = {
            "name": fields.pop("name", f"hook {uuid.uuid4().hex[:8]}"),
            "url": url,
            "eventType": event_type,
            **fields,
        }
        body, secret = await webhooks.create(ctx, conn, admin, changes)
    return Hook(body["id"], body["name"], secret, fields.get("accessToken"))


# --- the same through the API ---------------------------------------------------------------

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


#: The standard DOCX's variables, and three more it does not use (allowed, with a warning).
API_VARIABLES = [
    *(variable_to_json(variable) for variable in STANDARD_VARIABLES),
    *(
        {"name": name, "type": "text", "repeatDepth": 0, "options": []}
        for name in ("Client Email", "Client Address", "Customer Number")
    ),
]


@dataclass(frozen=True)
class ApiWorkItem:
    """A work item made through the API, on a template declaring `API_VARIABLES`."""

    id: str
    work_group_id: str
    template_id: str


async def work_item_over_api(
    http: httpx.AsyncClient,
    site: SiteUsers,
    *,
    variables: Sequence[dict[str, Any]] = tuple(API_VARIABLES),
    event_elements: tuple[str, ...] = ("Look up client",),
) -> ApiWorkItem:
    """Upload the standard DOCX declaring `variables` (`API_VARIABLES`: those it uses), make
    a work group and a work item, as an administrator would."""
    admin = site.auth("SiteAdministrator")
    definition = {
        "name": "Engagement",
        "variables": list(variables),
        "eventElements": list(event_elements),
    }
    template = await http.post(
        "/api/v1/templates",
        files={"file": ("engagement.docx", standard_template(), DOCX)},
        data={"definition": json.dumps(definition)},
        headers=admin,
    )
    assert template.status_code == 201, template.text
    group = await http.post("/api/v1/workgroups", json={"name": "Clients"}, headers=admin)
    assert group.status_code == 201, group.text
    item = await http.post(
        "/api/v1/workitems",
        json={
            "workGroupId": group.json()["id"],
            "templateId": template.json()["id"],
            "name": "Smith engagement",
        },
        headers=admin,
    )
    assert item.status_code == 201, item.text
    return ApiWorkItem(item.json()["id"], group.json()["id"], template.json()["id"])


async def hook_over_api(
    http: httpx.AsyncClient,
    site: SiteUsers,
    url: str,
    *,
    event_type: str = "InterviewLoadEvent",
    **fields: Any,
) -> Hook:
    """A webhook created with `POST /api/v1/webhooks`."""
    body = {
        "name": fields.pop("name", f"hook {uuid.uuid4().hex[:8]}"),
        "url": url,
        "eventType": event_type,
        **fields,
    }
    created = await http.post("/api/v1/webhooks", json=body, headers=site.auth())
    assert created.status_code == 201, created.text
    made = created.json()
    return Hook(made["id"], made["name"], made.get("secret"), fields.get("accessToken"))


async def open_over_api(
    http: httpx.AsyncClient, site: SiteUsers, item: ApiWorkItem
) -> dict[str, Any]:
    opened = await http.post(f"/api/v1/workitems/{item.id}/interviews", headers=site.auth("User"))
    assert opened.status_code == 201, opened.text
    body: dict[str, Any] = opened.json()
    return body


def values_of(interview: dict[str, Any]) -> dict[str, Any]:
    return {a["name"]: a["value"] for a in interview["answers"]["answers"]}


# --- receivers ------------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: The verified event, for handlers that answer from it.
EVENT: web.RequestKey[WebhookEvent] = web.RequestKey("event", WebhookEvent)  # type: ignore[arg-type]


@dataclass
class Receiver:
    """A loopback HTTP server. Routes are added after it starts (a webhook needs the URL
    before it exists, and the route needs the webhook's secret); each verifies its calls
    with the receiver SDK and refuses bad ones with 401."""

    base: str = ""
    routes: dict[str, tuple[Verifier | None, Handler]] = field(default_factory=dict)
    seen: list[tuple[str, WebhookEvent]] = field(default_factory=list)
    methods: list[tuple[str, str]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)

    def route(self, path: str, verifier: Verifier | None, handler: Handler) -> str:
        self.routes[path] = (verifier, handler)
        return f"{self.base}{path}"

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.methods.append((path, request.method))
        if path not in self.routes:
            return web.Response(status=404)
        verifier, handler = self.routes[path]
        if verifier is not None:
            body = await request.read()
            try:
                event = verifier.verify(
                    request.method, str(request.url), dict(request.headers), body
                )
            except Exception as exc:
                self.rejected.append(f"{path}: {exc}")
                return web.Response(status=401, text=str(exc))
            self.seen.append((path, event))
            request[EVENT] = event
        return await handler(request)


@asynccontextmanager
async def serve(ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[Receiver]:
    """A receiver on 127.0.0.1 with no routes yet (HTTPS when given a TLS context)."""
    receiver = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", receiver.dispatch)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.Server)
    scheme = "https" if ssl_context else "http"
    receiver.base = f"{scheme}://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield receiver
    finally:
        await runner.cleanup()


def answer_json(answers: Any, delay: float = 0.0, status: int = 200) -> Handler:
    """A handler replying with `answers` as JSON after `delay` seconds."""

    async def handler(request: web.Request) -> web.Response:
        if delay:
            await asyncio.sleep(delay)
        return web.Response(
            status=status, body=json.dumps(answers), content_type="application/json"
        )

    return handler


async def hook_at(
    ctx: AppContext,
    site: SiteUsers,
    receiver: Receiver,
    path: str,
    handler: Handler,
    **fields: Any,
) -> Hook:
    """A webhook pointing at `receiver` + `path`, whose route verifies with the hook's secret."""
    hook = await make_hook(ctx, site, f"{receiver.base}{path}", **fields)
    receiver.route(path, hook.verifier(), handler)
    return hook


def self_signed_context() -> ssl.SSLContext:
    """A server TLS context with a certificate for 127.0.0.1 that nobody trusts."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "docuhooks interview test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with tempfile.TemporaryDirectory() as folder:
        cert_file, key_file = f"{folder}/cert.pem", f"{folder}/key.pem"
        with open(cert_file, "wb") as fh:
            fh.write(cert.public_bytes(serialization.Encoding.PEM))
        with open(key_file, "wb") as fh:
            fh.write(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        context.load_cert_chain(cert_file, key_file)
    return context


def refused_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
