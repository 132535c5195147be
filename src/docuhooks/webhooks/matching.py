"""Matching: which webhooks an event reaches, and what the senders need to sign for them.

The outbox, the post-processing driver and the worker read webhooks through here; nothing
here changes a webhook (that is `webhooks.service`)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks.core.events import AuthMethod, EventType, Verb
from docuhooks.core.signing import SigningSecret, WebhookTarget
from docuhooks.store.prepared import Prepared
from docuhooks.store.schema import sites, webhook_scopes, webhooks
from docuhooks.webhooks.interfaces import WebhookContext
from docuhooks.webhooks.targets import MatchedWebhooks, MatchKey, PreparedWebhook


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


#: Overlay order: the order matching returns webhooks in.
_OVERLAY_ORDER = (webhooks.c.sort_order, webhooks.c.created_at, webhooks.c.id)

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
    .order_by(*_OVERLAY_ORDER)
)
_MATCHING_NAMED = _MATCHING.where(
    webhooks.c.interview_event_name == sa.bindparam("interview_event_name")
)
#: The same selections, ids only: the outbox needs nothing else of each webhook, and every
#: column read is a column converted, per webhook, per event. Every event written through
#: the outbox runs one of them, so they are prepared (`store.prepared`).
_MATCHING_IDS = Prepared(_MATCHING.with_only_columns(webhooks.c.id))
_MATCHING_NAMED_IDS = Prepared(_MATCHING_NAMED.with_only_columns(webhooks.c.id))


#: How many webhooks each interview event name reaches, in one statement: the interview
#: page says it on each of its buttons, and a template may name 500 (one query each was 500
#: queries a page view). Its parameters are those `matching_params` gives, but the name.
_COUNTS_BY_EVENT_NAME = (
    _MATCHING.with_only_columns(webhooks.c.interview_event_name, sa.func.count().label("hooks"))
    .order_by(None)
    .group_by(webhooks.c.interview_event_name)
)


async def counts_by_event_name(
    conn: AsyncConnection, *, site_id: str, work_group_id: str | None, template_id: str | None
) -> dict[str, int]:
    """How many active CustomInterviewEvent webhooks a step of this work group and template
    reaches, by interview event name (a name none reaches is absent): what `matching` would
    select for each name, counted in one statement."""
    params = matching_params(
        site_id, EventType.CUSTOM_INTERVIEW_EVENT, work_group_id, template_id, None
    )
    del params["interview_event_name"]
    rows = (await conn.execute(_COUNTS_BY_EVENT_NAME, params)).all()
    return {str(row.interview_event_name): int(row.hooks) for row in rows}


def ranked_selection(*, interview_event_name: bool) -> sa.Select[Any]:
    """The selection `matching_ids` runs, as a part for a larger statement (the outbox's one
    statement on PostgreSQL): each webhook's id and its `place` in overlay order, unordered.
    Its parameters are those `matching_params` gives; `interview_event_name` for the
    CustomInterviewEvent ones."""
    selection = _MATCHING_NAMED if interview_event_name else _MATCHING
    place = sa.func.row_number().over(order_by=_OVERLAY_ORDER).label("place")
    return selection.with_only_columns(webhooks.c.id, place).order_by(None)


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
    params = matching_params(site_id, event_type, work_group_id, template_id, interview_event_name)
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
    params = matching_params(site_id, event_type, work_group_id, template_id, interview_event_name)
    statement = _MATCHING_NAMED_IDS if "interview_event_name" in params else _MATCHING_IDS
    return [row.id for row in await statement.all(conn, params)]


def matching_params(
    site_id: str,
    event_type: EventType,
    work_group_id: str | None,
    template_id: str | None,
    interview_event_name: str | None,
) -> dict[str, Any]:
    """The bound values of the matching statements (`ranked_selection` too); the interview
    event name only for the CustomInterviewEvent ones, which select on it."""
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
