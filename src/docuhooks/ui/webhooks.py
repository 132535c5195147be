"""Webhook pages: the list, one webhook, create and edit, activation, deletion, secret
rotation, the test send, and the audit log. Each calls the service function its API route
calls, with the signed-in principal, so the site and role rules are the API's own."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks import audit
from docuhooks.api.deps import Ctx
from docuhooks.core.events import INTERVIEW_EVENTS, NOTIFICATION_EVENTS, AuthMethod
from docuhooks.delivery import log, operational, recovery, stats, webhook_views
from docuhooks.delivery.claims import Caps
from docuhooks.errors import Conflict, FieldError, Forbidden, LimitExceeded, ValidationFailed
from docuhooks.identity.models import Principal
from docuhooks.platform import catalog, sample_sends, workgroups
from docuhooks.store import pagination
from docuhooks.ui import forms
from docuhooks.ui.outcomes import describe_call
from docuhooks.ui.rendering import UiRoute, is_htmx, redirect, render
from docuhooks.ui.session import Checked, SignedIn, UiSession
from docuhooks.webhooks import service

router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)

LIST_SIZE = 50
RECENT_DELIVERIES = 20
NOTIFICATION_TYPES = frozenset(str(t) for t in NOTIFICATION_EVENTS)
INTERVIEW_TYPES = frozenset(str(t) for t in INTERVIEW_EVENTS)


def _page(request: Request, webhook_id: str, notice: str) -> Response:
    """After an action: htmx callers get a fragment instead (see each route)."""
    return redirect(f"/ui/webhooks/{webhook_id}?notice={notice}")


async def _choices(conn: AsyncConnection, who: Principal) -> dict[str, Any]:
    """The site's work groups and templates, to scope a webhook by name rather than by id."""
    groups = await workgroups.list_page(conn, who, limit=pagination.MAX_LIMIT, cursor=None)
    templates = await catalog.list_page(conn, who, limit=pagination.MAX_LIMIT, cursor=None)
    return {"work_groups": groups.items, "templates": templates.items}


@router.get("")
async def ui_root() -> Response:
    return redirect("/ui/")


@router.get("/")
@router.get("/webhooks")  # where a person types it, beside the form's POST /ui/webhooks
async def webhook_list(
    request: Request, ctx: Ctx, session: SignedIn, status: str = "", cursor: str = ""
) -> Response:
    if not session.principal.can_admin_webhooks:
        # The UI's home (and the server's address) for people who assemble documents is
        # their work items, not a page they may not see.
        return redirect("/ui/workitems")
    async with ctx.db.read() as conn:
        page = await webhook_views.list_page(
            conn,
            session.principal,
            limit=LIST_SIZE,
            cursor=cursor or None,
            status=status or None,
            health_at=ctx.now(),
            destination_cap=Caps.from_settings(ctx.settings).destination,
        )
        sparks = await stats.sparklines(conn, [item["id"] for item in page.items], now=ctx.now())
    return render(request, "webhooks.html", session, page=page, status=status, sparks=sparks)


def _form_page(
    request: Request,
    session: UiSession,
    form: forms.WebhookForm,
    choices: dict[str, Any],
    *,
    webhook: dict[str, Any] | None,
    problem: str = "",
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "webhook_form.html",
        session,
        status_code=status_code,
        form=form,
        webhook=webhook,
        problem=problem,
        event_types=forms.EVENT_TYPES,
        operational_types=forms.OPERATIONAL_TYPES,
        auth_methods=forms.AUTH_METHODS,
        help=forms.HELP,
        **choices,
    )


@router.get("/webhooks/new")
async def new_webhook(request: Request, ctx: Ctx, session: SignedIn) -> Response:
    service.require_admin(session.principal)
    async with ctx.db.read() as conn:
        choices = await _choices(conn, session.principal)
    form = forms.WebhookForm(forms.blank_values())
    return _form_page(request, session, form, choices, webhook=None)


def _secret_page(
    request: Request, session: UiSession, webhook: dict[str, Any], secret: str, why: str
) -> Response:
    # The secret is rendered in the response to the POST that made it: never in a URL, a
    # redirect or any later page.
    return render(request, "secret.html", session, webhook=webhook, secret=secret, why=why)


@router.post("/webhooks")
async def create_webhook(request: Request, ctx: Ctx, session: Checked) -> Response:
    who = session.principal
    form = forms.parse_webhook(await request.form(), creating=True)
    problem, status_code = "", 422
    if form.ok:
        try:
            async with ctx.db.transaction() as conn:
                webhook, secret = await service.create(ctx, conn, who, form.changes)
        except ValidationFailed as exc:
            form.add(exc.details)
        except (Conflict, LimitExceeded) as exc:  # a name taken; the site's most webhooks
            problem = exc.message
        except Forbidden as exc:  # an operational event type, for a SiteAdministrator only
            form.add([FieldError("eventType", exc.message)])
            status_code = 403
        else:
            if secret:
                return _secret_page(request, session, webhook, secret, "created")
            return _page(request, webhook["id"], "created")
    async with ctx.db.read() as conn:
        choices = await _choices(conn, who)
    return _form_page(
        request,
        session,
        form,
        choices,
        webhook=None,
        problem=problem,
        status_code=status_code,
    )


@router.get("/webhooks/{webhook_id}")
async def webhook_page(request: Request, webhook_id: str, ctx: Ctx, session: SignedIn) -> Response:
    who = session.principal
    async with ctx.db.read() as conn:
        webhook = await webhook_views.read(
            conn,
            who,
            webhook_id,
            now=ctx.now(),
            destination_cap=Caps.from_settings(ctx.settings).destination,
        )
        deliveries = await log.list_deliveries(
            conn, who, webhook["id"], now=ctx.now(), limit=RECENT_DELIVERIES
        )
        history = await stats.webhook_history(conn, webhook["id"], now=ctx.now())
        choices = await _choices(conn, who)
    names = {item["id"]: item["name"] for items in choices.values() for item in items}
    return render(
        request,
        "webhook.html",
        session,
        webhook=webhook,
        deliveries=deliveries,
        delivery_status="",
        live=True,
        names=names,
        can_redeliver=webhook["eventType"] in NOTIFICATION_TYPES,
        history=history,
        interview=webhook["eventType"] in INTERVIEW_TYPES,
    )


@router.get("/webhooks/{webhook_id}/edit")
async def edit_webhook(request: Request, webhook_id: str, ctx: Ctx, session: SignedIn) -> Response:
    async with ctx.db.read() as conn:
        webhook = service.to_api(await service.get_row(conn, session.principal, webhook_id))
        choices = await _choices(conn, session.principal)
    form = forms.WebhookForm(forms.values_of(webhook))
    return _form_page(request, session, form, choices, webhook=webhook)


@router.post("/webhooks/{webhook_id}/edit")
async def update_webhook(request: Request, webhook_id: str, ctx: Ctx, session: Checked) -> Response:
    who = session.principal
    form = forms.parse_webhook(await request.form(), creating=False)
    problem, status_code = "", 422
    if form.ok:
        try:
            async with ctx.db.transaction() as conn:
                webhook, secret = await service.update(ctx, conn, who, webhook_id, form.changes)
        except ValidationFailed as exc:
            form.add(exc.details)
        except Conflict as exc:
            problem = exc.message
        except Forbidden as exc:  # an operational event type, for a SiteAdministrator only
            form.add([FieldError("eventType", exc.message)])
            status_code = 403
        else:
            if secret:
                return _secret_page(request, session, webhook, secret, "issued")
            return _page(request, webhook["id"], "updated")
    async with ctx.db.read() as conn:
        webhook = service.to_api(await service.get_row(conn, who, webhook_id))
        choices = await _choices(conn, who)
    return _form_page(
        request,
        session,
        form,
        choices,
        webhook=webhook,
        problem=problem,
        status_code=status_code,
    )


async def _status_change(
    request: Request, ctx: Ctx, session: UiSession, webhook_id: str, action: str
) -> Response:
    who = session.principal
    if action == "resumed":
        # Run again if PostgreSQL ends a deadlock with a worker recording outcomes.
        webhook = await ctx.db.retried(lambda conn: operational.resume(ctx, conn, who, webhook_id))
    else:
        async with ctx.db.transaction() as conn:
            webhook = await service.set_active(ctx, conn, who, webhook_id, action == "activated")
    if is_htmx(request):
        return render(request, "_status.html", session, webhook=webhook, changed=action)
    return _page(request, webhook["id"], action)


@router.post("/webhooks/{webhook_id}/activate")
async def activate(request: Request, webhook_id: str, ctx: Ctx, session: Checked) -> Response:
    return await _status_change(request, ctx, session, webhook_id, "activated")


@router.post("/webhooks/{webhook_id}/deactivate")
async def deactivate(request: Request, webhook_id: str, ctx: Ctx, session: Checked) -> Response:
    return await _status_change(request, ctx, session, webhook_id, "deactivated")


@router.post("/webhooks/{webhook_id}/resume")
async def resume(request: Request, webhook_id: str, ctx: Ctx, session: Checked) -> Response:
    return await _status_change(request, ctx, session, webhook_id, "resumed")


@router.get("/webhooks/{webhook_id}/delete")
async def confirm_delete(
    request: Request, webhook_id: str, ctx: Ctx, session: SignedIn
) -> Response:
    async with ctx.db.read() as conn:
        webhook = service.to_api(await service.get_row(conn, session.principal, webhook_id))
    return render(request, "delete.html", session, webhook=webhook)


@router.post("/webhooks/{webhook_id}/delete")
async def delete_webhook(webhook_id: str, ctx: Ctx, session: Checked) -> Response:
    # Run again if PostgreSQL ends a deadlock with a worker recording outcomes.
    await ctx.db.retried(lambda conn: service.delete(ctx, conn, session.principal, webhook_id))
    return redirect("/ui/?notice=deleted")


def _regenerate_page(
    request: Request,
    session: UiSession,
    webhook: dict[str, Any],
    *,
    grace: str = "0",
    error: str = "",
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "regenerate.html",
        session,
        status_code=status_code,
        webhook=webhook,
        grace=grace,
        error=error,
        max_hours=forms.MAX_GRACE_HOURS,
    )


@router.get("/webhooks/{webhook_id}/regenerate-secret")
async def regenerate_form(
    request: Request, webhook_id: str, ctx: Ctx, session: SignedIn
) -> Response:
    async with ctx.db.read() as conn:
        webhook = service.to_api(await service.get_row(conn, session.principal, webhook_id))
    if webhook["authenticationMethod"] == AuthMethod.ACCESS_TOKEN.value:
        raise Conflict(
            "this webhook uses AccessToken authentication, which has no secret: edit it to "
            "change the method or the access token"
        )
    return _regenerate_page(request, session, webhook)


@router.post("/webhooks/{webhook_id}/regenerate-secret")
async def regenerate_secret(
    request: Request, webhook_id: str, ctx: Ctx, session: Checked
) -> Response:
    submitted = await request.form()
    grace, problem = forms.parse_grace_hours(submitted)
    try:
        if problem:
            raise ValidationFailed.of([FieldError("graceHours", problem)])
        async with ctx.db.transaction() as conn:
            webhook, secret = await service.regenerate_secret(
                ctx, conn, session.principal, webhook_id, grace
            )
    except ValidationFailed as exc:
        async with ctx.db.read() as conn:
            webhook = service.to_api(await service.get_row(conn, session.principal, webhook_id))
        message = "; ".join(e.message for e in exc.details) or exc.message
        grace_text = str(submitted.get("graceHours") or "")
        return _regenerate_page(
            request, session, webhook, grace=grace_text, error=message, status_code=422
        )
    return _secret_page(request, session, webhook, secret, "regenerated")


@router.post("/webhooks/{webhook_id}/test")
async def send_test(request: Request, webhook_id: str, ctx: Ctx, session: Checked) -> Response:
    # No transaction is held here: the test send runs its own, and calls the receiver.
    sent = await sample_sends.send_test(ctx, session.principal, webhook_id)
    outcome = (
        None
        if sent.result is None
        else describe_call(sent.status == "succeeded", sent.result, sent.warnings)
    )
    context: dict[str, Any] = {"sent": sent, "outcome": outcome, "webhook_id": webhook_id}
    if is_htmx(request):
        return render(
            request,
            "_test_result.html",
            session,
            headers={"HX-Trigger": "deliveries-changed"},
            **context,
        )
    return render(request, "test_result.html", session, **context)


@router.post("/webhooks/{webhook_id}/recover")
async def recover(request: Request, webhook_id: str, ctx: Ctx, session: Checked) -> Response:
    """Re-send the failed deliveries since a time, as `POST /webhooks/{id}/recover` does: the
    job runs in the background, and its page follows its progress."""
    form = await request.form()
    try:
        since = datetime.fromisoformat(str(form.get("since") or ""))
    except ValueError:
        raise ValidationFailed.of(
            [FieldError("since", "give a date and time, e.g. 2026-11-29T09:00")]
        ) from None
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    try:
        job = await recovery.start_recovery(ctx, session.principal, webhook_id, since=since)
    except recovery.RecoveryInProgress as busy:
        # The one in progress, in place of the one asked for, with the API's status: its
        # panel follows it, and the form can be sent again once it has finished.
        template = "_recovery.html" if is_htmx(request) else "recovery.html"
        return render(
            request,
            template,
            session,
            status_code=409,
            job=busy.job,
            webhook_id=webhook_id,
            already=True,
        )
    if is_htmx(request):
        # In place: the panel follows the job's progress itself, as on its own page.
        return render(request, "_recovery.html", session, job=job, webhook_id=webhook_id)
    return redirect(f"/ui/webhooks/{webhook_id}/recoveries/{job['id']}")


@router.get("/webhooks/{webhook_id}/recoveries/{recovery_id}")
async def recovery_page(
    request: Request, webhook_id: str, recovery_id: str, ctx: Ctx, session: SignedIn
) -> Response:
    """A recovery's progress: the page, or (for htmx, every second until it ends) its panel."""
    async with ctx.db.read() as conn:
        job = await recovery.get_recovery(
            conn,
            session.principal,
            webhook_id,
            recovery_id,
            kept_days=ctx.settings.kept_delivery_days,
        )
    template = "_recovery.html" if is_htmx(request) else "recovery.html"
    return render(request, template, session, job=job, webhook_id=webhook_id)


@router.get("/webhooks/{webhook_id}/deliveries")
async def deliveries(
    request: Request,
    webhook_id: str,
    ctx: Ctx,
    session: SignedIn,
    status: str = "",
    cursor: str = "",
) -> Response:
    """The delivery list: a fragment for htmx's live refresh, else a page of its own (paging
    and filtering work without JavaScript)."""
    who = session.principal
    async with ctx.db.read() as conn:
        webhook = service.to_api(await service.get_row(conn, who, webhook_id))
        page = await log.list_deliveries(
            conn,
            who,
            webhook["id"],
            now=ctx.now(),
            limit=LIST_SIZE if cursor else RECENT_DELIVERIES,
            cursor=cursor or None,
            status=status or None,
        )
    context: dict[str, Any] = {
        "webhook": webhook,
        "deliveries": page,
        "delivery_status": status,
        # Only the newest page refreshes itself: an older page would jump under the reader.
        "live": not cursor,
        "can_redeliver": webhook["eventType"] in NOTIFICATION_TYPES,
    }
    if is_htmx(request):
        return render(request, "_deliveries.html", session, **context)
    return render(request, "deliveries.html", session, **context)


@router.get("/webhooks/{webhook_id}/audit")
async def audit_log(request: Request, webhook_id: str, ctx: Ctx, session: SignedIn) -> Response:
    async with ctx.db.read() as conn:
        row = await service.get_row(conn, session.principal, webhook_id)
        entries = await audit.list_entries(
            conn, session.principal.site_id, object_id=row.id, limit=pagination.MAX_LIMIT
        )
    return render(request, "audit.html", session, webhook=service.to_api(row), entries=entries)
