"""The checks a webhook change must pass beyond its configuration rules (`webhooks.config`):
the work groups and templates it names exist in the site, its name is unique there, one
PostProcessingEvent webhook per site, and an access token fit to travel as a bearer token."""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks.core.events import AuthMethod, EventType
from docuhooks.errors import Conflict, FieldError, ValidationFailed
from docuhooks.store.schema import templates, webhooks, work_groups
from docuhooks.webhooks.config import WebhookConfig

MAX_ACCESS_TOKEN = 4096
_VISIBLE_ASCII = re.compile(r"[!-~]+")


async def check_references(conn: AsyncConnection, site_id: str, cfg: WebhookConfig) -> None:
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


async def check_unique(
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


def access_token_of(changes: dict[str, Any]) -> str | None:
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


def auth_errors(method: AuthMethod, token: str | None, *, had_token: bool) -> list[FieldError]:
    if method is AuthMethod.ACCESS_TOKEN and token is None and not had_token:
        return [FieldError("accessToken", "is required for AccessToken authentication")]
    if method is not AuthMethod.ACCESS_TOKEN and token is not None:
        return [FieldError("accessToken", f"applies only to AccessToken, not {method}")]
    return []
