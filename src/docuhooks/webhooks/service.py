"""Webhook administration: create, read, update, delete, activate, deactivate, resume,
rotate secrets.

Every change here tells the context's interview match cache (`webhooks.targets`) at once and
again when its transaction ends, so interview steps in this process see it on their next
call; other processes see it within the cache's TTL. Matching an event to webhooks, for the
senders, is `webhooks.matching`; the checks a change must pass are `webhooks.validation`."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks import audit
from docuhooks.core.destinations import destination_of
from docuhooks.core.events import OPERATIONAL_EVENTS, AuthMethod, EventType
from docuhooks.core.signing import SigningSecret, generate_secret
from docuhooks.errors import (
    BadRequest,
    Conflict,
    FieldError,
    Forbidden,
    LimitExceeded,
    ValidationFailed,
)
from docuhooks.identity.models import Principal
from docuhooks.store import pagination
from docuhooks.store.notify import notify_due_deliveries
from docuhooks.store.schema import (
    deliveries,
    is_pending,
    not_held_in_order,
    webhook_scopes,
    webhooks,
)
from docuhooks.store.scoped import fetch_in_site, lock_site
from docuhooks.webhooks.config import WebhookConfig, changed_fields, resolve, scope_ids
from docuhooks.webhooks.interfaces import WebhookContext
from docuhooks.webhooks.targets import forget_site
from docuhooks.webhooks.validation import (
    access_token_of,
    auth_errors,
    check_unique,
    reference_errors,
)

MAX_GRACE = timedelta(days=7)


def require_admin(principal: Principal) -> None:
    if not principal.can_admin_webhooks:
        raise Forbidden(
            "managing webhooks needs the SiteAdministrator or IntegrationAdministrator role"
        )


def require_site_admin_for(principal: Principal, event_type: str) -> None:
    """Operational webhooks receive the platform's events about every webhook of the site:
    only a SiteAdministrator may create, change, rotate, resume or delete one."""
    if EventType(event_type) in OPERATIONAL_EVENTS and not principal.is_site_admin:
        raise Forbidden(f"{event_type} webhooks are managed by SiteAdministrators only")


async def _row_to_change(
    conn: AsyncConnection, principal: Principal, webhook_id: str
) -> sa.Row[Any]:
    """`get_row`, for a change: an operational webhook needs a SiteAdministrator."""
    row = await get_row(conn, principal, webhook_id)
    require_site_admin_for(principal, row.event_type)
    return row


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
    token, token_errors = access_token_of(changes)
    errors += token_errors
    if cfg is not None and not token_errors:
        errors += auth_errors(cfg.auth_method, token, had_token=False)
    errors += await reference_errors(conn, principal.site_id, *scope_ids(fields))
    if cfg is None or errors:
        raise ValidationFailed.of(errors)
    require_site_admin_for(principal, cfg.event_type)
    await check_unique(conn, principal.site_id, cfg, None)
    await _check_room(conn, principal.site_id, ctx.settings.site_max_webhooks)
    secret = (
        None if cfg.auth_method is AuthMethod.ACCESS_TOKEN else generate_secret(cfg.auth_method)
    )
    now = ctx.now()
    webhook_id = str(uuid.uuid4())
    forget_site(ctx.webhook_targets, conn, principal.site_id)
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


async def _check_room(conn: AsyncConnection, site_id: str, most: int) -> None:
    """Refuse a webhook past the site's `most` (0: no limit), counting under the site's lock:
    two creates racing for the last place are counted one after the other.

    A 422 `webhook_limit_exceeded`, as GitHub answers a hook past a repository's limit (and
    as docuhooks answers input past its other limits): not 429, which says the same request
    succeeds later by itself, nor 403, which says a role is missing."""
    if most <= 0:
        return
    await lock_site(conn, site_id)
    have = (
        await conn.execute(
            sa.select(sa.func.count()).select_from(webhooks).where(webhooks.c.site_id == site_id)
        )
    ).scalar_one()
    if have >= most:
        raise LimitExceeded(
            "webhook_limit_exceeded",
            f"the site has {have} webhooks, the most it may have (site_max_webhooks is "
            f"{most}): delete one it no longer needs, or ask the installation's operator to "
            "raise the limit",
        )


async def update(
    ctx: WebhookContext,
    conn: AsyncConnection,
    principal: Principal,
    webhook_id: str,
    changes: dict[str, Any],
) -> tuple[dict[str, Any], str | None]:
    """PATCH: change only the fields given. Switching to HMAC or StandardWebhooks issues a new
    secret (returned once); switching to AccessToken needs the token and drops the secret."""
    row = await _row_to_change(conn, principal, webhook_id)
    old = config_of(row)
    fields = {k: v for k, v in changes.items() if k != "accessToken"}
    cfg, errors = resolve(fields, old)
    token, token_errors = access_token_of(changes)
    errors += token_errors
    if cfg is not None and not token_errors:
        keeps_token = (
            cfg.auth_method is AuthMethod.ACCESS_TOKEN and row.access_token_enc is not None
        )
        errors += auth_errors(cfg.auth_method, token, had_token=keeps_token)
    errors += await reference_errors(conn, principal.site_id, *scope_ids(fields, old))
    if cfg is None or errors:
        raise ValidationFailed.of(errors)
    if not changes:
        raise BadRequest("nothing to change: send at least one field")
    require_site_admin_for(principal, cfg.event_type)
    await check_unique(conn, principal.site_id, cfg, row.id)
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
    forget_site(ctx.webhook_targets, conn, principal.site_id)
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
    row = await _row_to_change(conn, principal, webhook_id)
    values: dict[str, Any] = {
        "active": active,
        "modified_at": ctx.now(),
        "modified_by": principal.user_id,
    }
    if active:
        values["status_reason"] = None
    else:
        values["status_reason"] = f"deactivated by {principal.login_name}"
    forget_site(ctx.webhook_targets, conn, principal.site_id)
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


@dataclass(frozen=True, slots=True)
class Resumption:
    webhook: dict[str, Any]
    #: This call lifted a suspension.
    lifted: bool
    #: When the suspension began, as this call read the webhook.
    suspended_at: datetime | None


async def resume(
    ctx: WebhookContext, conn: AsyncConnection, principal: Principal, webhook_id: str
) -> dict[str, Any]:
    """Lift a suspension (or reactivate): pending deliveries become due at once, oldest first.

    The API and the web UI resume through `delivery.operational.resume`, which also
    announces a lifted suspension (`WebhookResumed`)."""
    return (await resume_webhook(ctx, conn, principal, webhook_id)).webhook


async def resume_webhook(
    ctx: WebhookContext, conn: AsyncConnection, principal: Principal, webhook_id: str
) -> Resumption:
    """`resume`, saying whether this call lifted a suspension (not if the webhook was not
    suspended, or a concurrent resume or probe lifted it first)."""
    row = await _row_to_change(conn, principal, webhook_id)
    now = ctx.now()
    forget_site(ctx.webhook_targets, conn, principal.site_id)
    # The deliveries' rows before the webhook's: the order in which a worker's recorder
    # usually takes them (a delivery's outcome, then its webhook's failure run). Its rarer
    # orders (a resumed webhook's backlog after its row) can still meet this one, and
    # PostgreSQL then aborts one side: callers run this in `Database.retried`.
    await conn.execute(
        deliveries.update()
        .where(deliveries.c.webhook_id == row.id, is_pending(), not_held_in_order(now))
        .values(next_attempt_at=now)
    )
    # Conditional, so that of two resumes (or a resume and a probe's success) racing, one
    # lifts the suspension and the other finds nothing to lift.
    lifted = await conn.execute(
        webhooks.update()
        .where(webhooks.c.id == row.id, webhooks.c.suspended_at.is_not(None))
        .values(suspended_at=None, next_probe_at=None)
    )
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
    await _wake_workers(ctx, conn)
    await audit.record(
        conn,
        principal,
        site_id=principal.site_id,
        now=ctx.now(),
        action="webhook.resumed",
        object_type="webhook",
        object_id=row.id,
        details={"wasSuspended": lifted.rowcount == 1},
    )
    return Resumption(
        to_api(await _reload(conn, row.id)),
        lifted=lifted.rowcount == 1,
        suspended_at=row.suspended_at,
    )


async def _wake_workers(ctx: WebhookContext, conn: AsyncConnection) -> None:
    """Deliveries became claimable: PostgreSQL workers hear it when `conn` commits; the
    in-process worker is rung now (on SQLite its claim then waits for this transaction's
    write lock, so it sees what the transaction changed)."""
    await notify_due_deliveries(conn)
    ctx.events_committed()


async def delete(
    ctx: WebhookContext, conn: AsyncConnection, principal: Principal, webhook_id: str
) -> None:
    row = await _row_to_change(conn, principal, webhook_id)
    forget_site(ctx.webhook_targets, conn, principal.site_id)
    # Its deliveries first (with their attempts and calls' rows, by their foreign keys),
    # then the webhook, rather than the webhook's cascade alone: a recorder usually takes a
    # delivery's row before its webhook's. Its rarer orders can still meet this one, and
    # PostgreSQL then aborts one side: callers run this in `Database.retried`.
    await conn.execute(deliveries.delete().where(deliveries.c.webhook_id == row.id))
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
    row = await _row_to_change(conn, principal, webhook_id)
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
    forget_site(ctx.webhook_targets, conn, principal.site_id)
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
