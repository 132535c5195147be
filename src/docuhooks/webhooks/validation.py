"""The checks a webhook change must pass beyond its configuration rules (`webhooks.config`),
returned as problems for the service to report together with the rest:
the work groups and templates it names exist in the site, its name is unique there, one
PostProcessingEvent webhook per site, and an access token fit to travel as a bearer token."""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks.core.events import AuthMethod, EventType
from docuhooks.errors import Conflict, FieldError
from docuhooks.store.schema import templates, webhooks, work_groups
from docuhooks.webhooks.config import WebhookConfig

MAX_ACCESS_TOKEN = 4096
_VISIBLE_ASCII = re.compile(r"[!-~]+")


async def reference_errors(
    conn: AsyncConnection,
    site_id: str,
    work_group_ids: tuple[str, ...],
    template_ids: tuple[str, ...],
) -> list[FieldError]:
    """The work groups and templates named that are not this site's."""
    errors: list[FieldError] = []
    for field, table, ids in (
        ("workGroupIds", work_groups, work_group_ids),
        ("templateIds", templates, template_ids),
    ):
        if not ids:
            continue
        found = set(
            (
                await conn.execute(
                    sa.select(table.c.id)
                    .where(table.c.site_id == site_id, table.c.id.in_(ids))
                    # A share of their rows: a template being deleted (`platform.deletion`)
                    # is waited for, and then is not found.
                    .with_for_update(read=True, key_share=True)
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
    return errors


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


def access_token_of(changes: dict[str, Any]) -> tuple[str | None, list[FieldError]]:
    """The access token given (None if none), or the problem with it."""
    token = changes.get("accessToken")
    if token is None:
        return None, []
    if not isinstance(token, str) or not token or len(token) > MAX_ACCESS_TOKEN:
        problem = f"must be 1 to {MAX_ACCESS_TOKEN} characters"
    elif not _VISIBLE_ASCII.fullmatch(token):
        # It travels as `Authorization: Bearer <token>`: anything else (a space, a line break,
        # an accented letter) is mangled or refused on the way, and every call then fails.
        problem = (
            "must be visible ASCII characters only (letters, digits and punctuation, no spaces)"
        )
    elif token.startswith("whsec_"):
        # The prefix marks a Standard Webhooks signing secret; receivers (the SDK among them)
        # would take this for one, and a bearer token must never look like a signing key.
        problem = "must not start with 'whsec_', which marks a Standard Webhooks secret"
    else:
        return token, []
    return None, [FieldError("accessToken", problem)]


def auth_errors(method: AuthMethod, token: str | None, *, had_token: bool) -> list[FieldError]:
    if method is AuthMethod.ACCESS_TOKEN and token is None and not had_token:
        return [FieldError("accessToken", "is required for AccessToken authentication")]
    if method is not AuthMethod.ACCESS_TOKEN and token is not None:
        return [FieldError("accessToken", f"applies only to AccessToken, not {method}")]
    return []
