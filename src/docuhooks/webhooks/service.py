"""Webhook administration: create, read, update, delete, activate, deactivate,
resume, rotate secrets; and matching for everything that sends events.

Every change here tells the context's interview match cache (`webhooks.targets`) at once and
again when its transaction ends, so interview steps in this process see it on their next
call; other processes see it within the cache's TTL."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks import audit
from docuhooks.core.destinations import destination_of
from docuhooks.core.events import AuthMethod, EventType, Verb
from docuhooks.core.signing import SigningSecret, WebhookTarget, generate_secret
from docuhooks.errors import BadRequest, Conflict, FieldError, Forbidden, ValidationFailed
from docuhooks.identity.models import Principal
from docuhooks.store import pagination
from docuhooks.store.notify import notify_due_deliveries
from docuhooks.store.prepared import Prepared
from docuhooks.store.schema import (
    deliveries,
    sites,
    templates,
    webhook_scopes,
    webhooks,
    work_groups,
)
from docuhooks.store.scoped import fetch_in_site
from docuhooks.webhooks.config import WebhookConfig, changed_fields, resolve
from docuhooks.webhooks.interfaces import WebhookContext
from docuhooks.webhooks.targets import MatchedWebhooks, MatchKey, PreparedWebhook

MAX_GRACE = timedelta(days=7)
MAX_ACCESS_TOKEN = 4096
_VISIBLE_ASCII = re.compile(r"[!-~]+")


def require_admin(principal: Principal) -> None:
    if not principal.can_admin_webhooks:
        raise Forbidden(
            "managing webhooks needs the SiteAdministrator or IntegrationAdministrator role"
        )


def config_of(row: sa.Row[Any]) -> WebhookConfig:
    return WebhookConfig(
        name=row.name,
        url=row.url,
        event_type=EventType(row.event_type),
        interview_event_name=row.interview_event_name,
        auth_method=AuthMethod(row.auth_method),
        request_verb=row.request_verb,
        active=row.active,
        accept_untrusted_ssl=row.accept_untrusted_ssl,
        work_group_ids=tuple(row.work_group_ids),
        template_ids=tuple(row.template_ids),
        order=row.sort_order,
        timeout_seconds=row.timeout_seconds,
        ordered_delivery=row.ordered_delivery,
        max_concurrency=row.max_concurrency,
    )


def status_of(row: sa.Row[Any]) -> str:
    if not row.active:
        return "inactive"
    if row.suspended_at is not None:
        return "suspended"
    return "active"


def to_api(row: sa.Row[Any]) -> dict[str, Any]:
    """The webhook as every read returns it: never the secret or the access token."""
    rotation = None
    if row.previous_secret_expires_at is not None:
        rotation = {
            "previousSecretId": row.previous_secret_kid,
            "previousSecretExpires": row.previous_secret_expires_at,
        }
    return {
        "id": row.id,
        "name": row.name,
        "url": row.url,
        "eventType": row.event_type,
        "interviewEventName": row.interview_event_name,
        "authenticationMethod": row.auth_method,
        "secretId": row.secret_kid,
        "secretRotation": rotation,
        "hasAccessToken": row.access_token_enc is not None,
        "requestVerb": row.request_verb,
        "active": row.active,
        "status": status_of(row),
        "statusReason": row.status_reason,
        "acceptUntrustedSsl": row.accept_untrusted_ssl,
        "workGroupIds": list(row.work_group_ids),
        "templateIds": list(row.template_ids),
        "order": row.sort_order,
        "timeoutSeconds": row.timeout_seconds,
        "orderedDelivery": row.ordered_delivery,
        "maxConcurrency": row.max_concurrency,
        "consecutiveFailures": row.consecutive_failures,
        "createdDate": row.created_at,
        "createdBy": row.created_by,
        "modifiedDate": row.modified_at,
        "modifiedBy": row.modified_by,
    }


def _config_columns(cfg: WebhookConfig) -> dict[str, Any]:
    return {
        "name": cfg.name,
        "url": cfg.url,
        "event_type": cfg.event_type.value,
        "interview_event_name": cfg.interview_event_name,
        "auth_method": cfg.auth_method.value,
        "request_verb": cfg.request_verb.value,
        "active": cfg.active,
        "accept_untrusted_ssl": cfg.accept_untrusted_ssl,
        "work_group_ids": list(cfg.work_group_ids),
        "template_ids": list(cfg.template_ids),
        "sort_order": cfg.order,
        "timeout_seconds": cfg.timeout_seconds,
        "ordered_delivery": cfg.ordered_delivery,
        "max_concurrency": cfg.max_concurrency,
        "destination": destination_of(cfg.url),
    }


async def get_row(conn: AsyncConnection, principal: Principal, webhook_id: str) -> sa.Row[Any]:
    """The webhook, if it exists in the caller's site; another site's is simply not found."""
    require_admin(principal)
    return await fetch_in_site(conn, webhooks, webhook_id, principal.site_id, "webhook")


async def _reload(conn: AsyncConnection, webhook_id: str) -> sa.Row[Any]:
    return (await conn.execute(sa.select(webhooks).where(webhooks.c.id == webhook_id))).one()


def _site_changed(ctx: WebhookContext, conn: AsyncConnection, site_id: str) -> None:
    """Forget the site's cached interview matches now, and again when this transaction
    commits or rolls back: a step that matched in between read the old rows."""
    ctx.webhook_targets.site_changed(site_id)
    sync = conn.sync_connection
    assert sync is not None
    ended = False

    def again(_conn: Any) -> None:
        nonlocal ended
        if ended:
            return
        ended = True
        ctx.webhook_targets.site_changed(site_id)
        # The connection outlives the transaction (the store keeps connections between
        # transactions), so the listeners come off once it ends; not from inside the
        # dispatch that is calling them.
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().call_soon(unlisten)

    def unlisten() -> None:
        for name in ("commit", "rollback"):
            if sa.event.contains(sync, name, again):
                sa.event.remove(sync, name, again)

    sa.event.listen(sync, "commit", again)
    sa.event.listen(sync, "rollback", again)


async def _check_references(conn: AsyncConnection, site_id: str, cfg: WebhookConfig) -> None:
    errors: list[FieldError] = []
    for field, table, ids in (
        ("workGroupIds", work_groups, cfg.work_group_ids),
        ("templateIds", templates, cfg.template_ids),
    ):
        if not ids:
            continue
        found = set(
            (
                await conn.execute(
                    sa.select(table.c.id).where(table.c.site_id == site_id, table.c.id.in_(ids))
                )
            ).scalars()
        )
        errors += [
            FieldError(
                f"{field}.{i}",
                f"no such {'work group' if field == 'workGroupIds' else 'template'} in this site",
            )
            for i, item in enumerate(ids)
            if item not in found
        ]
    if errors:
        raise ValidationFailed.of(errors)


async def _check_unique(
    conn: AsyncConnection, site_id: str, cfg: WebhookConfig, webhook_id: str | None
) -> None:
    others = sa.true() if webhook_id is None else webhooks.c.id != webhook_id
    same_name = await conn.scalar(
        sa.select(webhooks.c.id).where(
            webhooks.c.site_id == site_id, webhooks.c.name == cfg.name, others
        )
    )
    if same_name:
        raise Conflict(f"a webhook named {cfg.name!r} already exists in this site")
    if cfg.event_type is EventType.POST_PROCESSING_EVENT:
        existing = await conn.scalar(
            sa.select(webhooks.c.name).where(
                webhooks.c.site_id == site_id,
                webhooks.c.event_type == EventType.POST_PROCESSING_EVENT.value,
                others,
            )
        )
        if existing:
            raise Conflict(
                f"this site already has a PostProcessingEvent webhook ({existing!r}); a site "
                "has only one: edit that one, or delete it first"
            )


async def _write_scopes(conn: AsyncConnection, webhook_id: str, cfg: WebhookConfig) -> None:
    await conn.execute(webhook_scopes.delete().where(webhook_scopes.c.webhook_id == webhook_id))
    rows = [
        {"webhook_id": webhook_id, "kind": "workgroup", "scope_id": i} for i in cfg.work_group_ids
    ]
    rows += [
        {"webhook_id": webhook_id, "kind": "template", "scope_id": i} for i in cfg.template_ids
    ]
    if rows:
        await conn.execute(webhook_scopes.insert(), rows)


def _access_token(changes: dict[str, Any]) -> str | None:
    token = changes.get("accessToken")
    if token is None:
        return None
    if not isinstance(token, str) or not token or len(token) > MAX_ACCESS_TOKEN:
        raise ValidationFailed.of(
            [FieldError("accessToken", f"must be 1 to {MAX_ACCESS_TOKEN} characters")]
        )
    if not _VISIBLE_ASCII.fullmatch(token):
        # It travels as `Authorization: Bearer <token>`: anything else (a space, a line break,
        # an accented letter) is mangled or refused on the way, and every call then fails.
        raise ValidationFailed.of(
            [
                FieldError(
                    "accessToken",
                    "must be visible ASCII characters only (letters, digits and punctuation, "
                    "no spaces)",
                )
            ]
        )
    if token.startswith("whsec_"):
        # The prefix marks a Standard Webhooks signing secret; receivers (the SDK among them)
        # would take this for one, and a bearer token must never look like a signing key.
        raise ValidationFailed.of(
            [
                FieldError(
                    "accessToken",
                    "must not start with 'whsec_', which marks a Standard Webhooks secret",
                )
            ]
        )
    return token


def _secret_columns(ctx: WebhookContext, secret: SigningSecret | None) -> dict[str, Any]:
    return {
        "secret_kid": secret.kid if secret else None,
        "secret_enc": ctx.box.encrypt(secret.value) if secret else None,
        "previous_secret_kid": None,
        "previous_secret_enc": None,
        "previous_secret_expires_at": None,
    }


async def create(
    ctx: WebhookContext, conn: AsyncConnection, principal: Principal, changes: dict[str, Any]
) -> tuple[dict[str, Any], str | None]:
    """Create a webhook; returns it and, for HMAC and StandardWebhooks, its secret (once)."""
    require_admin(principal)
    fields = {k: v for k, v in changes.items() if k != "accessToken"}
    cfg, errors = resolve(fields)
    token = _access_token(changes)
    if cfg is not None:
        errors += _auth_errors(cfg.auth_method, token, had_token=False)
    if cfg is None or errors:
        raise ValidationFailed.of(errors)
    await _check_references(conn, principal.site_id, cfg)
    await _check_unique(conn, principal.site_id, cfg, None)
    secret = (
        None if cfg.auth_method is AuthMethod.ACCESS_TOKEN else generate_secret(cfg.auth_method)
    )
    now = ctx.now()
    webhook_id = str(uuid.uuid4())
    _site_changed(ctx, conn, principal.site_id)
    await conn.execute(
        webhooks.insert().values(
            id=webhook_id,
            site_id=principal.site_id,
            access_token_enc=ctx.box.encrypt(token) if token else None,
            created_at=now,
            created_by=principal.user_id,
            modified_at=now,
            modified_by=principal.user_id,
            **_config_columns(cfg),
            **_secret_columns(ctx, secret),
        )
    )
    await _write_scopes(conn, webhook_id, cfg)
    await audit.record(
        conn,
        principal,
        site_id=principal.site_id,
        now=ctx.now(),
        action="webhook.created",
        object_type="webhook",
        object_id=webhook_id,
        details={"name": cfg.name, "eventType": cfg.event_type.value, "url": cfg.url},
    )
    return to_api(await _reload(conn, webhook_id)), secret.value if secret else None


def _auth_errors(method: AuthMethod, token: str | None, *, had_token: bool) -> list[FieldError]:
    if method is AuthMethod.ACCESS_TOKEN and token is None and not had_token:
        return [FieldError("accessToken", "is required for AccessToken authentication")]
    if method is not AuthMethod.ACCESS_TOKEN and token is not None:
        return [FieldError("accessToken", f"applies only to AccessToken, not {method}")]
    return []


async def update(
    ctx: WebhookContext,
    conn: AsyncConnection,
    principal: Principal,
    webhook_id: str,
    changes: dict[str, Any],
) -> tuple[dict[str, Any], str | None]:
    """PATCH: change only the fields given. Switching to HMAC or StandardWebhooks issues a new
    secret (returned once); switching to AccessToken needs the token and drops the secret."""
    row = await get_row(conn, principal, webhook_id)
    old = config_of(row)
    fields = {k: v for k, v in changes.items() if k != "accessToken"}
    cfg, errors = resolve(fields, old)
    token = _access_token(changes)
    if cfg is not None:
        keeps_token = (
            cfg.auth_method is AuthMethod.ACCESS_TOKEN and row.access_token_enc is not None
        )
        errors += _auth_errors(cfg.auth_method, token, had_token=keeps_token)
    if cfg is None or errors:
        raise ValidationFailed.of(errors)
    if not changes:
        raise BadRequest("nothing to change: send at least one field")
    await _check_references(conn, principal.site_id, cfg)
    await _check_unique(conn, principal.site_id, cfg, row.id)
    values = _config_columns(cfg)
    secret: SigningSecret | None = None
    if cfg.auth_method != old.auth_method:
        if cfg.auth_method is AuthMethod.ACCESS_TOKEN:
            values.update(_secret_columns(ctx, None))
        else:
            secret = generate_secret(cfg.auth_method)
            values.update(_secret_columns(ctx, secret))
            values["access_token_enc"] = None
    if token is not None:
        values["access_token_enc"] = ctx.box.encrypt(token)
    if cfg.active and not old.active:
        values.update(status_reason=None)
    values.update(modified_at=ctx.now(), modified_by=principal.user_id)
    _site_changed(ctx, conn, principal.site_id)
    await conn.execute(webhooks.update().where(webhooks.c.id == row.id).values(**values))
    if (cfg.work_group_ids, cfg.template_ids) != (old.work_group_ids, old.template_ids):
        await _write_scopes(conn, row.id, cfg)
    changed = changed_fields(old, cfg) + (["accessToken"] if token is not None else [])
    await audit.record(
        conn,
        principal,
        site_id=principal.site_id,
        now=ctx.now(),
        action="webhook.updated",
        object_type="webhook",
        object_id=row.id,
        details={"fields": changed, "secretIssued": secret is not None},
    )
    return to_api(await _reload(conn, row.id)), secret.value if secret else None


async def set_active(
    ctx: WebhookContext, conn: AsyncConnection, principal: Principal, webhook_id: str, active: bool
) -> dict[str, Any]:
    row = await get_row(conn, principal, webhook_id)
    values: dict[str, Any] = {
        "active": active,
        "modified_at": ctx.now(),
        "modified_by": principal.user_id,
    }
    if active:
        values["status_reason"] = None
    else:
        values["status_reason"] = f"deactivated by {principal.login_name}"
    _site_changed(ctx, conn, principal.site_id)
    await conn.execute(webhooks.update().where(webhooks.c.id == row.id).values(**values))
    if active and not row.active:
        await _wake_workers(ctx, conn)  # its waiting deliveries may be claimed again
    await audit.record(
        conn,
        principal,
        site_id=principal.site_id,
        now=ctx.now(),
        action="webhook.activated" if active else "webhook.deactivated",
        object_type="webhook",
        object_id=row.id,
    )
    return to_api(await _reload(conn, row.id))


async def resume(
    ctx: WebhookContext, conn: AsyncConnection, principal: Principal, webhook_id: str
) -> dict[str, Any]:
    """Lift a suspension (or reactivate): pending deliveries become due at once, oldest first."""
    row = await get_row(conn, principal, webhook_id)
    now = ctx.now()
    _site_changed(ctx, conn, principal.site_id)
    await conn.execute(
        webhooks.update()
        .where(webhooks.c.id == row.id)
        .values(
            active=True,
            suspended_at=None,
            status_reason=None,
            consecutive_failures=0,
            first_failure_at=None,
            modified_at=now,
            modified_by=principal.user_id,
        )
    )
    await conn.execute(
        deliveries.update()
        .where(deliveries.c.webhook_id == row.id, deliveries.c.status == "pending")
        .values(next_attempt_at=now)
    )
    await _wake_workers(ctx, conn)
    await audit.record(
        conn,
        principal,
        site_id=principal.site_id,
        now=ctx.now(),
        action="webhook.resumed",
        object_type="webhook",
        object_id=row.id,
        details={"wasSuspended": row.suspended_at is not None},
    )
    return to_api(await _reload(conn, row.id))


async def _wake_workers(ctx: WebhookContext, conn: AsyncConnection) -> None:
    """Deliveries became claimable: PostgreSQL workers hear it when `conn` commits; the
    in-process worker is rung now (on SQLite its claim then waits for this transaction's
    write lock, so it sees what the transaction changed)."""
    await notify_due_deliveries(conn)
    ctx.events_committed()


async def delete(
    ctx: WebhookContext, conn: AsyncConnection, principal: Principal, webhook_id: str
) -> None:
    row = await get_row(conn, principal, webhook_id)
    _site_changed(ctx, conn, principal.site_id)
    await conn.execute(webhooks.delete().where(webhooks.c.id == row.id))
    await audit.record(
        conn,
        principal,
        site_id=principal.site_id,
        now=ctx.now(),
        action="webhook.deleted",
        object_type="webhook",
        object_id=row.id,
        details={"name": row.name, "eventType": row.event_type},
    )


async def regenerate_secret(
    ctx: WebhookContext,
    conn: AsyncConnection,
    principal: Principal,
    webhook_id: str,
    grace_period_seconds: int = 0,
) -> tuple[dict[str, Any], str]:
    """A new secret, returned once. With a grace period the old one keeps signing until it
    ends, so the receiver can deploy the new secret first."""
    row = await get_row(conn, principal, webhook_id)
    if row.auth_method == AuthMethod.ACCESS_TOKEN.value:
        raise Conflict(
            "this webhook uses AccessToken authentication, which has no HMAC secret; change "
            "its authenticationMethod to HMAC to get one, or PATCH a new accessToken"
        )
    grace = timedelta(seconds=grace_period_seconds)
    if not timedelta(0) <= grace <= MAX_GRACE:
        raise ValidationFailed.of(
            [FieldError("gracePeriodSeconds", "must be from 0 to 604800 (7 days)")]
        )
    now = ctx.now()
    secret = generate_secret(AuthMethod(row.auth_method))
    values = _secret_columns(ctx, secret)
    if grace and row.secret_enc:
        values.update(
            previous_secret_kid=row.secret_kid,
            previous_secret_enc=row.secret_enc,
            previous_secret_expires_at=now + grace,
        )
    values.update(modified_at=now, modified_by=principal.user_id)
    _site_changed(ctx, conn, principal.site_id)
    await conn.execute(webhooks.update().where(webhooks.c.id == row.id).values(**values))
    await audit.record(
        conn,
        principal,
        site_id=principal.site_id,
        now=ctx.now(),
        action="webhook.secret_rotated",
        object_type="webhook",
        object_id=row.id,
        details={"newSecretId": secret.kid, "gracePeriodSeconds": grace_period_seconds},
    )
    return to_api(await _reload(conn, row.id)), secret.value


async def list_page(
    conn: AsyncConnection,
    principal: Principal,
    *,
    limit: int = 50,
    cursor: str | None = None,
    event_type: str | None = None,
    status: str | None = None,
) -> tuple[pagination.Page[dict[str, Any]], list[sa.Row[Any]]]:
    """A page of the site's webhooks, oldest first, with the rows it shows (from which
    `delivery.webhook_views` reads each one's health)."""
    require_admin(principal)
    query = sa.select(webhooks).where(webhooks.c.site_id == principal.site_id)
    if event_type is not None:
        if event_type not in {e.value for e in EventType}:
            raise ValidationFailed.of([FieldError("eventType", "is not an event type")])
        query = query.where(webhooks.c.event_type == event_type)
    if status is not None:
        conditions = {
            "active": sa.and_(webhooks.c.active.is_(True), webhooks.c.suspended_at.is_(None)),
            "inactive": webhooks.c.active.is_(False),
            "suspended": sa.and_(webhooks.c.active.is_(True), webhooks.c.suspended_at.is_not(None)),
        }
        if status not in conditions:
            raise ValidationFailed.of(
                [FieldError("status", "must be active, inactive or suspended")]
            )
        query = query.where(conditions[status])
    query = pagination.apply(
        query, webhooks.c.created_at, webhooks.c.id, limit=limit, cursor=cursor, newest_first=False
    )
    rows = list((await conn.execute(query)).all())
    page = pagination.page_of(rows, limit, to_api)
    return page, rows[: len(page.items)]


# --- used by the senders ------------------------------------------------------------------------


def _scoped(kind: str) -> sa.ColumnElement[bool]:
    """The webhook has no `kind` scope, or has the event's (`:<kind>_id`, NULL matching none)."""
    any_scope = sa.exists().where(
        webhook_scopes.c.webhook_id == webhooks.c.id, webhook_scopes.c.kind == kind
    )
    this_scope = sa.exists().where(
        webhook_scopes.c.webhook_id == webhooks.c.id,
        webhook_scopes.c.kind == kind,
        webhook_scopes.c.scope_id == sa.bindparam(f"{kind}_id", type_=sa.String),
    )
    return sa.or_(~any_scope, this_scope)


#: Built once: matching runs for every event, and building the statement cost more than
#: running it.
_MATCHING = (
    sa.select(webhooks)
    .where(
        webhooks.c.site_id == sa.bindparam("site_id"),
        webhooks.c.event_type == sa.bindparam("event_type"),
        webhooks.c.active.is_(True),
        _scoped("workgroup"),
        _scoped("template"),
    )
    .order_by(webhooks.c.sort_order, webhooks.c.created_at, webhooks.c.id)
)
_MATCHING_NAMED = _MATCHING.where(
    webhooks.c.interview_event_name == sa.bindparam("interview_event_name")
)
#: The same selections, ids only: the outbox needs nothing else of each webhook, and every
#: column read is a column converted, per webhook, per event. Every event written through
#: the outbox runs one of them, so they are prepared (`store.prepared`).
_MATCHING_IDS = Prepared(_MATCHING.with_only_columns(webhooks.c.id))
_MATCHING_NAMED_IDS = Prepared(_MATCHING_NAMED.with_only_columns(webhooks.c.id))


async def matching(
    conn: AsyncConnection,
    *,
    site_id: str,
    event_type: EventType,
    work_group_id: str | None,
    template_id: str | None,
    interview_event_name: str | None = None,
) -> list[sa.Row[Any]]:
    """The active webhooks an event reaches, in overlay order (order, created).

    Starts from the (site, event type, active) index and checks scopes by primary key, so
    the cost follows the webhooks of this site and type, never the whole table."""
    params = _matching_params(site_id, event_type, work_group_id, template_id, interview_event_name)
    statement = _MATCHING_NAMED if "interview_event_name" in params else _MATCHING
    return list((await conn.execute(statement, params)).all())


async def matching_ids(
    conn: AsyncConnection,
    *,
    site_id: str,
    event_type: EventType,
    work_group_id: str | None,
    template_id: str | None,
    interview_event_name: str | None = None,
) -> list[str]:
    """The ids of the webhooks `matching` selects, in the same order."""
    params = _matching_params(site_id, event_type, work_group_id, template_id, interview_event_name)
    statement = _MATCHING_NAMED_IDS if "interview_event_name" in params else _MATCHING_IDS
    return [row.id for row in await statement.all(conn, params)]


def _matching_params(
    site_id: str,
    event_type: EventType,
    work_group_id: str | None,
    template_id: str | None,
    interview_event_name: str | None,
) -> dict[str, Any]:
    """The bound values of the matching statements; the interview event name only for the
    CustomInterviewEvent ones, which select on it."""
    params = {
        "site_id": site_id,
        "event_type": event_type.value,
        "workgroup_id": work_group_id,
        "template_id": template_id,
    }
    if event_type is EventType.CUSTOM_INTERVIEW_EVENT:
        params["interview_event_name"] = (interview_event_name or "").strip()
    return params


def signing_target(
    ctx: WebhookContext, row: sa.Row[Any], issuer: str, now: datetime
) -> WebhookTarget:
    """Everything the request builder needs, with secrets decrypted only for this call."""
    secret = (
        SigningSecret(row.secret_kid, ctx.box.decrypt(row.secret_enc)) if row.secret_enc else None
    )
    previous = None
    if (
        row.previous_secret_enc
        and row.previous_secret_expires_at
        and row.previous_secret_expires_at > now
    ):
        previous = SigningSecret(row.previous_secret_kid, ctx.box.decrypt(row.previous_secret_enc))
    return WebhookTarget(
        webhook_id=row.id,
        url=row.url,
        verb=Verb(row.request_verb),
        auth_method=AuthMethod(row.auth_method),
        issuer=issuer,
        secret=secret,
        previous_secret=previous,
        access_token=ctx.box.decrypt(row.access_token_enc) if row.access_token_enc else None,
    )


async def interview_targets(
    ctx: WebhookContext,
    conn: AsyncConnection,
    *,
    site_id: str,
    event_type: EventType,
    work_group_id: str | None,
    template_id: str | None,
    interview_event_name: str | None = None,
) -> MatchedWebhooks:
    """The webhooks an interview step calls, prepared for signing, through the context's
    match cache (`webhooks.targets`): a step within the cache's TTL of the last one with the
    same key reads nothing. On a miss they are matched in `conn`."""
    name = (interview_event_name or "").strip() or None
    key: MatchKey = (site_id, event_type.value, work_group_id, template_id, name)
    cache = ctx.webhook_targets
    cached = cache.get(key)
    if cached is not None:
        return cached
    read_at = cache.clock.monotonic()
    rows = await matching(
        conn,
        site_id=site_id,
        event_type=event_type,
        work_group_id=work_group_id,
        template_id=template_id,
        interview_event_name=interview_event_name,
    )
    issuer = ""
    if rows:
        issuer = str(await conn.scalar(sa.select(sites.c.base_url).where(sites.c.id == site_id)))
    matched = MatchedWebhooks(tuple(prepare(ctx, row) for row in rows), issuer)
    cache.put(key, matched, read_at=read_at)
    return matched


def prepare(ctx: WebhookContext, row: sa.Row[Any]) -> PreparedWebhook:
    """The webhook with its secrets decrypted; one that cannot be decrypted is `unusable`."""
    grace_ends = row.previous_secret_expires_at
    prepared = PreparedWebhook(
        id=row.id,
        name=row.name,
        url=row.url,
        verb=Verb(row.request_verb),
        auth_method=AuthMethod(row.auth_method),
        timeout_seconds=row.timeout_seconds,
        accept_untrusted_ssl=row.accept_untrusted_ssl,
    )
    try:
        return replace(
            prepared,
            secret=(
                SigningSecret(row.secret_kid, ctx.box.decrypt(row.secret_enc))
                if row.secret_enc
                else None
            ),
            previous_secret=(
                SigningSecret(row.previous_secret_kid, ctx.box.decrypt(row.previous_secret_enc))
                if row.previous_secret_enc and grace_ends and grace_ends > ctx.now()
                else None
            ),
            previous_secret_expires_at=grace_ends,
            access_token=(ctx.box.decrypt(row.access_token_enc) if row.access_token_enc else None),
        )
    except ValueError as exc:
        return replace(prepared, unusable=str(exc))
