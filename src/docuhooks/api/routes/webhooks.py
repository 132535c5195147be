"""Webhook administration routes. Delivery-related webhook routes (deliveries,
test, recover) live with the delivery engine."""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Query, Response
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    WithJsonSchema,
    model_serializer,
)

from docuhooks import audit
from docuhooks.api.deps import Caller, Conn, Ctx, StandaloneCaller
from docuhooks.api.models import (
    ERRORS,
    AuthMethodName,
    ErrorDetail,
    ErrorResponse,
    EventTypeName,
    Input,
    Output,
    Page,
)
from docuhooks.delivery import operational, webhook_views
from docuhooks.delivery.address_policy import REFUSAL_REMEDY, AddressPolicy, parse_ip_host
from docuhooks.delivery.claims import Caps
from docuhooks.store import pagination
from docuhooks.webhooks import service

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"], responses=ERRORS)


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def _described_as(wire_type: Any) -> WithJsonSchema:
    """The OpenAPI schema of `wire_type`, for a field the model lets through as it came."""
    return WithJsonSchema(TypeAdapter(wire_type).json_schema())


Text200 = Annotated[Any, _described_as(Annotated[str | None, Field(max_length=200)])]
IdList = Annotated[Any, _described_as(Annotated[list[str], Field(max_length=500)] | None)]


def _int_between(low: int, high: int) -> WithJsonSchema:
    return _described_as(Annotated[int | None, Field(ge=low, le=high)])


# A webhook's fields as sent. Each is described with its wire type, but the model takes any
# JSON value: `webhooks.config.resolve` checks them all and reports every problem in one
# answer. A field the model refused would hide the others' problems (a bad event type hid a
# bad URL), since FastAPI answers before the service runs.
class WebhookFields(BaseModel):
    # Unknown fields too go to the service, which names them beside the other problems.
    model_config = ConfigDict(extra="allow", json_schema_extra={"additionalProperties": False})

    name: Text200 = None
    url: Annotated[Any, _described_as(Annotated[str | None, Field(max_length=2048)])] = None
    eventType: Annotated[Any, _described_as(EventTypeName | None)] = None
    interviewEventName: Text200 = None
    authenticationMethod: Annotated[Any, _described_as(AuthMethodName | None)] = None
    accessToken: Annotated[Any, _described_as(Annotated[str | None, Field(max_length=4096)])] = (
        Field(default=None, description="AccessToken only; write-only")
    )
    requestVerb: Annotated[
        Any, _described_as(Annotated[str, Field(pattern="^(GET|POST)$")] | None)
    ] = None
    active: Annotated[Any, _described_as(bool | None)] = None
    acceptUntrustedSsl: Annotated[Any, _described_as(bool | None)] = None
    workGroupIds: IdList = None
    templateIds: IdList = None
    order: Annotated[Any, _int_between(-(2**31), 2**31 - 1)] = None
    timeoutSeconds: Annotated[Any, _int_between(1, 120)] = None
    orderedDelivery: Annotated[Any, _described_as(bool | None)] = None
    maxConcurrency: Annotated[Any, _int_between(1, 100)] = Field(
        default=None,
        description="Calls in flight to this webhook at most, across all workers (default 10)",
    )

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


#: A field the schema calls required (no default), which the service checks is there.
_REQUIRED: Any = Field(default=None, json_schema_extra=_no_default)


class WebhookCreate(WebhookFields):
    # Required on the wire, and so described; a missing one is the service's to report,
    # with the rest.
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={"additionalProperties": False, "required": ["name", "url", "eventType"]},
    )

    name: Annotated[Any, _described_as(Annotated[str, Field(max_length=200)])] = _REQUIRED
    url: Annotated[Any, _described_as(Annotated[str, Field(max_length=2048)])] = _REQUIRED
    eventType: Annotated[Any, _described_as(EventTypeName)] = _REQUIRED


class SecretRotation(Output):
    previousSecretId: str | None
    previousSecretExpires: datetime


class Breaker(Output):
    state: str = Field(description="closed, open or half_open (a probe call is in flight)")
    since: datetime | None = Field(description="When the breaker last opened or closed")
    nextProbeAt: datetime | None = Field(description="While not closed: the next probe call")
    consecutiveFailures: int = Field(
        description="The destination's current run of failures (connect, timeout, TLS, 5xx)"
    )


class WebhookHealth(Output):
    destination: str = Field(description="scheme://host:port, whose breaker this webhook obeys")
    inFlight: int = Field(description="Calls of this webhook in flight now, from every worker")
    concurrencyLimit: int = Field(
        description="Calls in flight allowed now: maxConcurrency, or the destination's limit "
        "(the installation's cap on calls to one destination, or its adaptive limit) if lower"
    )
    breaker: Breaker
    pausedUntil: datetime | None = Field(
        description="The destination is paused until then by a Retry-After"
    )
    dueBacklog: int = Field(
        description="Due deliveries waiting for a sender (not in flight); counted up to "
        "100,000 on a read of one webhook, 1,000 in a list"
    )
    dueBacklogCapped: bool = Field(description="dueBacklog reached its cap: there are more")
    oldestDueAgeSeconds: float | None = Field(
        description="Seconds since the oldest due delivery became due; null when none is"
    )


class Webhook(Output):
    id: str
    name: str
    url: str
    eventType: str
    interviewEventName: str | None
    authenticationMethod: str
    secretId: str | None
    secretRotation: SecretRotation | None
    hasAccessToken: bool
    requestVerb: str
    active: bool
    status: str = Field(description="active, inactive or suspended")
    statusReason: str | None
    acceptUntrustedSsl: bool
    workGroupIds: list[str]
    templateIds: list[str]
    order: int
    timeoutSeconds: int
    orderedDelivery: bool
    maxConcurrency: int
    consecutiveFailures: int
    warnings: list[ErrorDetail] = Field(
        default_factory=list,
        description="Problems that do not stop the webhook being saved: a URL whose host, "
        "as written (an IP address, localhost), the outbound address policy refuses, so "
        "its deliveries would fail until the policy lets it through",
    )
    health: WebhookHealth | None = Field(
        default=None,
        description="Isolation's view of the webhook now; in reads (one webhook, the list), "
        "null in the answers of writes",
    )
    createdDate: datetime
    createdBy: str | None
    modifiedDate: datetime
    modifiedBy: str | None


class WebhookWithSecret(Webhook):
    """The answer of a write that may make a secret: creation, an edit that switches to a
    signing method, and regeneration. `secret` is present only when this call made one."""

    # In the schema a string that may be absent, as on the wire: it is never null there.
    secret: Annotated[str | None, WithJsonSchema({"type": "string"})] = Field(
        default=None,
        json_schema_extra=_no_default,
        description="The HMAC / StandardWebhooks secret, present only in the answer of the "
        "call that made it (creation, a change to a signing method, regeneration), never "
        "null: store it now, it is never shown again.",
    )

    # No return annotation: the OpenAPI schema stays the model's own, with `secret` optional.
    @model_serializer(mode="wrap")
    def _secret_only_when_made(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        # One shape for every answer without a new secret, as reads have: no `secret` key,
        # rather than `"secret": null` beside them.
        data = handler(self)
        if isinstance(data, dict) and data.get("secret") is None:
            data.pop("secret", None)
        return data


class RegenerateSecret(Input):
    gracePeriodSeconds: int = Field(
        default=0,
        ge=0,
        le=7 * 24 * 3600,
        description="Keep signing with the old secret this long (0 = it stops at once)",
    )


class AuditEntry(Output):
    id: str
    action: str
    objectType: str
    objectId: str
    actor: dict[str, str | None]
    details: dict[str, Any]
    createdDate: datetime


def _with_secret(ctx: Ctx, webhook: dict[str, Any], secret: str | None) -> WebhookWithSecret:
    return WebhookWithSecret(**_with_warnings(ctx, webhook), secret=secret)


def _with_warnings(ctx: Ctx, webhook: dict[str, Any]) -> dict[str, Any]:
    return {**webhook, "warnings": url_warnings(ctx.address_policy, webhook["url"])}


def url_warnings(policy: AddressPolicy, url: str) -> list[dict[str, str]]:
    """What the address policy will say of a host it can judge before any lookup: an IP
    address, or localhost. The webhook is saved all the same (the policy may change, and a
    name is judged by what it resolves to when a call is sent), but the administrator hears
    of it now rather than from the first delivery's error."""
    host = urlsplit(url).hostname or ""
    literal = parse_ip_host(host)
    named = host.rstrip(".").lower()
    if literal is None and (named == "localhost" or named.endswith(".localhost")):
        literal = ipaddress.ip_address("127.0.0.1")  # as resolvers answer it (RFC 6761)
    reason = policy.blocked_reason(literal) if literal is not None else None
    if reason is None:
        return []
    said = reason if literal is not None and host == str(literal) else f"{host}: {reason}"
    return [{"field": "url", "message": f"deliveries will be refused: {said}{REFUSAL_REMEDY}"}]


@router.get("", response_model=Page[Webhook])
async def list_webhooks(
    ctx: Ctx,
    conn: Conn,
    who: Caller,
    limit: Annotated[int, Query(ge=1, le=pagination.MAX_LIMIT)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    eventType: EventTypeName | None = None,
    status: Annotated[str | None, Query(pattern="^(active|inactive|suspended)$")] = None,
) -> dict[str, Any]:
    page = await webhook_views.list_page(
        conn,
        who,
        limit=limit,
        cursor=cursor,
        event_type=eventType,
        status=status,
        health_at=ctx.now(),
        destination_cap=Caps.from_settings(ctx.settings).destination,
    )
    items = [_with_warnings(ctx, item) for item in page.items]
    return {"items": items, "nextCursor": page.next_cursor}


@router.post(
    "",
    status_code=201,
    response_model=WebhookWithSecret,
    responses={
        422: {
            "model": ErrorResponse,
            "description": "Invalid input; details name the fields. Or "
            "`webhook_limit_exceeded`: the site has `site_max_webhooks` webhooks already",
        }
    },
)
async def create_webhook(
    body: WebhookCreate, ctx: Ctx, conn: Conn, who: Caller
) -> WebhookWithSecret:
    """Create a webhook. A site has at most `site_max_webhooks` (100 by default): past it,
    422 `webhook_limit_exceeded` (delete one it no longer needs)."""
    webhook, secret = await service.create(ctx, conn, who, body.changes())
    return _with_secret(ctx, webhook, secret)


@router.get("/{webhook_id}", response_model=Webhook)
async def get_webhook(webhook_id: str, ctx: Ctx, conn: Conn, who: Caller) -> dict[str, Any]:
    webhook = await webhook_views.read(
        conn,
        who,
        webhook_id,
        now=ctx.now(),
        destination_cap=Caps.from_settings(ctx.settings).destination,
    )
    return _with_warnings(ctx, webhook)


@router.patch("/{webhook_id}", response_model=WebhookWithSecret)
async def update_webhook(
    webhook_id: str, body: WebhookFields, ctx: Ctx, conn: Conn, who: Caller
) -> WebhookWithSecret:
    webhook, secret = await service.update(ctx, conn, who, webhook_id, body.changes())
    return _with_secret(ctx, webhook, secret)


@router.delete("/{webhook_id}", status_code=204, response_class=Response)
async def delete_webhook(webhook_id: str, ctx: Ctx, who: StandaloneCaller) -> Response:
    # Run again if PostgreSQL ends a deadlock with a worker recording outcomes by aborting it.
    await ctx.db.retried(lambda conn: service.delete(ctx, conn, who, webhook_id))
    return Response(status_code=204)


@router.post("/{webhook_id}/activate", response_model=Webhook)
async def activate(webhook_id: str, ctx: Ctx, conn: Conn, who: Caller) -> dict[str, Any]:
    return _with_warnings(ctx, await service.set_active(ctx, conn, who, webhook_id, True))


@router.post("/{webhook_id}/deactivate", response_model=Webhook)
async def deactivate(webhook_id: str, ctx: Ctx, conn: Conn, who: Caller) -> dict[str, Any]:
    return _with_warnings(ctx, await service.set_active(ctx, conn, who, webhook_id, False))


@router.post("/{webhook_id}/resume", response_model=Webhook)
async def resume(webhook_id: str, ctx: Ctx, who: StandaloneCaller) -> dict[str, Any]:
    """Lift a suspension: pending deliveries become due at once; the site's WebhookResumed
    webhooks hear of it."""
    # Run again if PostgreSQL ends a deadlock with a worker recording outcomes by aborting it.
    resumed = await ctx.db.retried(lambda conn: operational.resume(ctx, conn, who, webhook_id))
    return _with_warnings(ctx, resumed)


@router.post("/{webhook_id}/regenerate-secret", response_model=WebhookWithSecret)
async def regenerate_secret(
    webhook_id: str,
    ctx: Ctx,
    conn: Conn,
    who: Caller,
    body: RegenerateSecret | None = None,
) -> WebhookWithSecret:
    grace = body.gracePeriodSeconds if body else 0
    webhook, secret = await service.regenerate_secret(ctx, conn, who, webhook_id, grace)
    return _with_secret(ctx, webhook, secret)


@router.get("/{webhook_id}/audit", response_model=list[AuditEntry])
async def webhook_audit(
    webhook_id: str,
    conn: Conn,
    who: Caller,
    limit: Annotated[int, Query(ge=1, le=pagination.MAX_LIMIT)] = 50,
) -> list[dict[str, Any]]:
    """Who changed this webhook, how and when (newest first)."""
    row = await service.get_row(conn, who, webhook_id)
    return await audit.list_entries(conn, who.site_id, object_id=row.id, limit=limit)
