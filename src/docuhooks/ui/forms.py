"""HTML forms ↔ the API's shapes: a submitted webhook form becomes the change dict the API's
webhook routes pass to `webhooks.service` (typed values under the API's field names), and
the service's field errors come back keyed by the form field they belong to. The rules
themselves are the service's alone, so the form shows every problem the API would name."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import FormData

from docuhooks.core.events import OPERATIONAL_EVENTS, AuthMethod, EventType
from docuhooks.errors import FieldError

EVENT_TYPES = [t.value for t in EventType]
OPERATIONAL_TYPES = [t.value for t in EventType if t in OPERATIONAL_EVENTS]
AUTH_METHODS = [m.value for m in AuthMethod]
CHECKBOXES = ("active", "acceptUntrustedSsl", "orderedDelivery")
MAX_GRACE_HOURS = 168

#: Explanations shown under the fields: the webhook configuration rules.
HELP = {
    "eventType": "Operational events report on this site's webhooks and their destinations; "
    "only a site administrator may choose one. They take no work groups or templates.",
    "interviewEventName": "CustomInterviewEvent only: the interview button's event name.",
    "authenticationMethod": "HMAC signs every call with a secret shown once after saving.",
    "accessToken": "AccessToken only. Write-only: it is never shown again. Leave empty to keep "
    "the stored one.",
    "requestVerb": "Default: GET for InterviewLoadEvent, POST for the rest.",
    "timeoutSeconds": "1 to 120. Empty: 15 for notifications, 5 for interview events, 60 for "
    "post-processing.",
    "maxConcurrency": "1 to 100. Calls in flight to this webhook at most, across every worker; "
    "its other due deliveries wait in the queue. Empty: 10 (new) or unchanged (edit).",
    "order": "The order in which interview answers are overlaid (lowest first).",
    "orderedDelivery": "NewWorkItemVersionComplete only: deliver each work item's versions "
    "strictly in order.",
    "acceptUntrustedSsl": "Skip TLS certificate checks for this webhook only.",
    "workGroupIds": "None ticked: every work group.",
    "templateIds": "None ticked: every template.",
}


@dataclass
class WebhookForm:
    """What the administrator typed (to show again), the change dict, and errors by field."""

    values: dict[str, Any]
    changes: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)

    def add(self, problems: Iterable[FieldError]) -> None:
        for problem in problems:
            self.errors.setdefault(form_field(problem.field), []).append(problem.message)

    @property
    def ok(self) -> bool:
        return not self.errors


def form_field(api_field: str) -> str:
    """`workGroupIds.2` → `workGroupIds`: an item's problem is shown at its list."""
    return api_field.split(".", 1)[0]


def blank_values() -> dict[str, Any]:
    """A new webhook's form: the configuration defaults of docs/api.md."""
    return {
        "name": "",
        "url": "",
        "eventType": EventType.NEW_WORK_ITEM_VERSION_COMPLETE.value,
        "interviewEventName": "",
        "authenticationMethod": AuthMethod.HMAC.value,
        "requestVerb": "",
        "active": True,
        "acceptUntrustedSsl": False,
        "workGroupIds": [],
        "templateIds": [],
        "order": "0",
        "timeoutSeconds": "",
        "maxConcurrency": "",
        "orderedDelivery": False,
    }


def values_of(webhook: dict[str, Any]) -> dict[str, Any]:
    """An existing webhook (as the API reads it) as form values; the access token is never
    read back."""
    return {
        "name": webhook["name"],
        "url": webhook["url"],
        "eventType": webhook["eventType"],
        "interviewEventName": webhook["interviewEventName"] or "",
        "authenticationMethod": webhook["authenticationMethod"],
        "requestVerb": webhook["requestVerb"],
        "active": webhook["active"],
        "acceptUntrustedSsl": webhook["acceptUntrustedSsl"],
        "workGroupIds": list(webhook["workGroupIds"]),
        "templateIds": list(webhook["templateIds"]),
        "order": str(webhook["order"]),
        "timeoutSeconds": str(webhook["timeoutSeconds"]),
        "maxConcurrency": str(webhook["maxConcurrency"]),
        "orderedDelivery": webhook["orderedDelivery"],
    }


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _whole_number(form: WebhookForm, name: str, text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        form.add([FieldError(name, "must be a whole number")])
        return None


def parse_webhook(submitted: FormData, *, creating: bool) -> WebhookForm:
    """The submitted form as an API change dict. An edit form holds every field, so an
    unticked box means false; empty optional fields mean "the default" (create) or "keep"
    (edit), except the interview event name, which empty clears."""
    values: dict[str, Any] = {
        name: _text(submitted, name)
        for name in (
            "name",
            "url",
            "eventType",
            "interviewEventName",
            "authenticationMethod",
            "requestVerb",
            "order",
            "timeoutSeconds",
            "maxConcurrency",
        )
    }
    # Activation has its own buttons (and audit entries) once a webhook exists.
    boxes = CHECKBOXES if creating else tuple(b for b in CHECKBOXES if b != "active")
    values.update({name: submitted.get(name) is not None for name in boxes})
    for name in ("workGroupIds", "templateIds"):
        values[name] = [v for v in submitted.getlist(name) if isinstance(v, str) and v]
    form = WebhookForm(values)

    changes: dict[str, Any] = {
        "name": values["name"],
        "url": values["url"],
        "eventType": values["eventType"],
        "authenticationMethod": values["authenticationMethod"],
        "workGroupIds": values["workGroupIds"],
        "templateIds": values["templateIds"],
        **{name: values[name] for name in boxes},
    }
    if values["interviewEventName"] or not creating:
        changes["interviewEventName"] = values["interviewEventName"] or None
    if values["requestVerb"]:
        changes["requestVerb"] = values["requestVerb"]
    token = submitted.get("accessToken")
    if isinstance(token, str) and token:
        changes["accessToken"] = token
    for name in ("order", "timeoutSeconds", "maxConcurrency"):
        if values[name]:
            number = _whole_number(form, name, values[name])
            if number is not None:
                changes[name] = number
    form.changes = changes
    return form


def parse_grace_hours(submitted: FormData) -> tuple[int, str | None]:
    """The regenerate form's grace period, in seconds, or the problem with it."""
    text = _text(submitted, "graceHours") or "0"
    try:
        hours = int(text)
    except ValueError:
        return 0, "must be a whole number of hours"
    if not 0 <= hours <= MAX_GRACE_HOURS:
        return 0, f"must be from 0 to {MAX_GRACE_HOURS} hours (7 days)"
    return hours * 3600, None
