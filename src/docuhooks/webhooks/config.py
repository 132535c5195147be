"""The webhook configuration rules as one pure function, shared by create and update."""

from __future__ import annotations

import dataclasses
import re
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from yarl import URL

from docuhooks.core.events import OPERATIONAL_EVENTS, AuthMethod, EventType, Verb
from docuhooks.errors import FieldError

INT32 = (-(2**31), 2**31 - 1)
MAX_SCOPE_IDS = 500
#: C0 and C1 controls and DEL: a name or event name is shown on pages and printed to
#: terminals (`docuhooks listen`), where `\x1b` and `\x9b` start escape sequences.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

DEFAULT_TIMEOUTS = {
    EventType.NEW_WORK_ITEM_VERSION_COMPLETE: 15,
    EventType.INTERVIEW_LOAD_EVENT: 5,
    EventType.CUSTOM_INTERVIEW_EVENT: 5,
    EventType.POST_PROCESSING_EVENT: 60,
    **dict.fromkeys(OPERATIONAL_EVENTS, 15),
}
#: Calls in flight to one webhook at most, across all workers, unless it says otherwise.
DEFAULT_MAX_CONCURRENCY = 10
MAX_CONCURRENCY_RANGE = (1, 100)
#: Event types whose calls are always POST: they carry documents, or a structured body.
POST_ONLY = frozenset(
    {EventType.NEW_WORK_ITEM_VERSION_COMPLETE, EventType.POST_PROCESSING_EVENT} | OPERATIONAL_EVENTS
)


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """Everything an administrator sets on a webhook, except secrets."""

    name: str
    url: str
    event_type: EventType
    interview_event_name: str | None
    auth_method: AuthMethod
    request_verb: Verb
    active: bool
    accept_untrusted_ssl: bool
    work_group_ids: tuple[str, ...]
    template_ids: tuple[str, ...]
    order: int
    timeout_seconds: int
    ordered_delivery: bool
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY


#: API field name → WebhookConfig attribute.
API_FIELDS = {
    "name": "name",
    "url": "url",
    "eventType": "event_type",
    "interviewEventName": "interview_event_name",
    "authenticationMethod": "auth_method",
    "requestVerb": "request_verb",
    "active": "active",
    "acceptUntrustedSsl": "accept_untrusted_ssl",
    "workGroupIds": "work_group_ids",
    "templateIds": "template_ids",
    "order": "order",
    "timeoutSeconds": "timeout_seconds",
    "orderedDelivery": "ordered_delivery",
    "maxConcurrency": "max_concurrency",
}


def default_verb(event_type: EventType) -> Verb:
    return Verb.GET if event_type is EventType.INTERVIEW_LOAD_EVENT else Verb.POST


def resolve(
    changes: dict[str, Any], existing: WebhookConfig | None = None
) -> tuple[WebhookConfig | None, list[FieldError]]:
    """Apply API-shaped `changes` to `existing` (or to the defaults, for a new webhook).

    Returns the complete configuration, or None with every problem found (not only the first),
    each naming its field. Each field is read and checked on its own first, then the rules
    that tie fields together (`_event_type_rules`, `_get_rules`).
    """
    errors: list[FieldError] = []
    unknown = sorted(set(changes) - set(API_FIELDS))
    errors += [FieldError(name, "is not a webhook field") for name in unknown]

    def take(api_name: str, current: Any) -> Any:
        value = changes.get(api_name, current)
        return current if value is None and api_name not in _NULLABLE else value

    event_type = _enum(
        EventType, take("eventType", existing and existing.event_type), "eventType", errors
    )
    if existing is None and changes.get("eventType") is None:
        errors.append(FieldError("eventType", "is required"))
    name = _name(take("name", existing and existing.name), errors)
    url = _url(take("url", existing and existing.url), errors)
    auth = _enum(
        AuthMethod,
        take("authenticationMethod", existing.auth_method if existing else AuthMethod.HMAC),
        "authenticationMethod",
        errors,
    )
    verb_input = _verb_input(changes.get("requestVerb"), existing, event_type)
    verb = _enum(Verb, verb_input, "requestVerb", errors) if verb_input is not None else None

    interview_event_name = take(
        "interviewEventName", existing.interview_event_name if existing else None
    )
    if isinstance(interview_event_name, str):
        interview_event_name = interview_event_name.strip() or None
    elif interview_event_name is not None:
        errors.append(FieldError("interviewEventName", "must be a string"))
        interview_event_name = None

    timeout_default = existing.timeout_seconds if existing else None
    if timeout_default is None and event_type is not None:
        timeout_default = DEFAULT_TIMEOUTS[event_type]
    timeout = take("timeoutSeconds", timeout_default)
    order = take("order", existing.order if existing else 0)
    ordered = take("orderedDelivery", existing.ordered_delivery if existing else False)
    max_concurrency = take(
        "maxConcurrency", existing.max_concurrency if existing else DEFAULT_MAX_CONCURRENCY
    )

    if event_type is not None:
        interview_event_name = _event_type_rules(
            event_type, interview_event_name, verb, ordered, errors
        )
    _get_rules(url, verb, auth, errors)
    if timeout is not None or event_type is not None:
        # Without a valid event type there is no default to check, only a value given.
        _whole_number(timeout, (1, 120), "timeoutSeconds", "from 1 to 120", errors)
    low, high = MAX_CONCURRENCY_RANGE
    _whole_number(max_concurrency, (low, high), "maxConcurrency", f"from {low} to {high}", errors)
    _whole_number(order, INT32, "order", "(32-bit)", errors)
    work_groups = _ids(
        take("workGroupIds", existing.work_group_ids if existing else ()), "workGroupIds", errors
    )
    templates = _ids(
        take("templateIds", existing.template_ids if existing else ()), "templateIds", errors
    )
    active = _bool(take("active", existing.active if existing else True), "active", errors)
    untrusted = _bool(
        take("acceptUntrustedSsl", existing.accept_untrusted_ssl if existing else False),
        "acceptUntrustedSsl",
        errors,
    )
    ordered = _bool(ordered, "orderedDelivery", errors)
    if event_type in OPERATIONAL_EVENTS:
        # An operational event concerns webhooks, not work items: a scope would match nothing.
        errors += [
            FieldError(field, f"does not apply to {event_type}: it concerns no work item")
            for field, ids in (("workGroupIds", work_groups), ("templateIds", templates))
            if ids
        ]

    if errors or None in (name, url, event_type, auth, verb):
        return None, errors
    assert name is not None and url is not None and event_type is not None
    assert auth is not None and verb is not None
    return (
        WebhookConfig(
            name=name,
            url=url,
            event_type=event_type,
            interview_event_name=interview_event_name,
            auth_method=auth,
            request_verb=verb,
            active=active,
            accept_untrusted_ssl=untrusted,
            work_group_ids=work_groups,
            template_ids=templates,
            order=order,
            timeout_seconds=timeout,
            ordered_delivery=ordered,
            max_concurrency=max_concurrency,
        ),
        errors,
    )


def scope_ids(
    changes: dict[str, Any], existing: WebhookConfig | None = None
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The well-formed work group and template ids a change leaves the webhook with, to look
    up in the site even when other fields are wrong (`resolve` reports the malformed ones)."""
    scopes = []
    for field, current in (
        ("workGroupIds", existing.work_group_ids if existing else ()),
        ("templateIds", existing.template_ids if existing else ()),
    ):
        value = changes.get(field)
        scopes.append(_ids(current if value is None else value, field, []))
    return scopes[0], scopes[1]


def _verb_input(given: Any, existing: WebhookConfig | None, event_type: EventType | None) -> Any:
    """The request verb to check: the one given, else the webhook's own unless its event type
    changes, else the new event type's default (None when there is no type to go by)."""
    if given is not None:
        return given
    type_changed = (
        existing is not None and event_type is not None and event_type != existing.event_type
    )
    if existing is not None and not type_changed:
        return existing.request_verb
    if event_type is not None:
        return default_verb(event_type)
    return None


def _event_type_rules(
    event_type: EventType,
    interview_event_name: str | None,
    verb: Verb | None,
    ordered: Any,
    errors: list[FieldError],
) -> str | None:
    """The fields that only some event types take; returns the interview event name kept
    (None where the type takes none)."""
    if event_type is EventType.CUSTOM_INTERVIEW_EVENT:
        if not interview_event_name:
            errors.append(FieldError("interviewEventName", "is required for CustomInterviewEvent"))
        elif len(interview_event_name) > 200 or _CONTROL.search(interview_event_name):
            errors.append(FieldError("interviewEventName", "must be 1 to 200 printable characters"))
    elif interview_event_name:
        errors.append(
            FieldError(
                "interviewEventName", f"applies only to CustomInterviewEvent, not {event_type}"
            )
        )
        interview_event_name = None
    if verb is not None and event_type in POST_ONLY and verb is Verb.GET:
        errors.append(FieldError("requestVerb", f"{event_type} webhooks are always POST"))
    if ordered and event_type is not EventType.NEW_WORK_ITEM_VERSION_COMPLETE:
        errors.append(FieldError("orderedDelivery", "applies only to NewWorkItemVersionComplete"))
    return interview_event_name


def _get_rules(
    url: str | None, verb: Verb | None, auth: AuthMethod | None, errors: list[FieldError]
) -> None:
    """What a GET request cannot do: carry a body to sign, or reuse the query parameters it
    adds to the URL itself."""
    if url is not None and verb is Verb.GET and auth is not None:
        clashes = sorted(_query_names(url) & _GET_PARAMETERS[auth])
        if clashes:
            errors.append(
                FieldError(
                    "url",
                    f"must not already carry the query parameter(s) {', '.join(clashes)}: "
                    f"a {auth} GET request adds them itself",
                )
            )
    if auth is AuthMethod.STANDARD_WEBHOOKS and verb is Verb.GET:
        errors.append(
            FieldError("requestVerb", "StandardWebhooks signs a body, so it is POST only")
        )


def _whole_number(
    value: Any, bounds: tuple[int, int], field: str, range_text: str, errors: list[FieldError]
) -> None:
    """`value` must be an int (a bool is not one) within `bounds`, both included."""
    low, high = bounds
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        errors.append(FieldError(field, f"must be a whole number {range_text}"))


_NULLABLE = frozenset({"interviewEventName"})

#: Query parameters a GET request adds to the webhook URL, per authentication method.
_GET_PARAMETERS: dict[AuthMethod, frozenset[str]] = {
    AuthMethod.HMAC: frozenset({"token"}),
    AuthMethod.ACCESS_TOKEN: frozenset(
        {
            "eventId",
            "eventType",
            "siteId",
            "test",
            "userId",
            "userLoginName",
            "userName",
            "userEmail",
            "interviewId",
            "interviewEventName",
            "workItemId",
            "workItemName",
            "workItemVersionId",
            "workGroupId",
            "templateId",
            "templateName",
        }
    ),
    AuthMethod.STANDARD_WEBHOOKS: frozenset(),
}


def _query_names(url: str) -> set[str]:
    from urllib.parse import parse_qsl

    return {name for name, _ in parse_qsl(urlsplit(url).query, keep_blank_values=True)}


def changed_fields(old: WebhookConfig, new: WebhookConfig) -> list[str]:
    reverse = {v: k for k, v in API_FIELDS.items()}
    return [
        reverse[f.name]
        for f in dataclasses.fields(WebhookConfig)
        if getattr(old, f.name) != getattr(new, f.name)
    ]


def _enum(kind: Any, value: Any, field: str, errors: list[FieldError]) -> Any:
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(m.value for m in kind)
        errors.append(FieldError(field, f"must be one of {allowed}; got {repr(value)[:100]}"))
        return None


def _name(value: Any, errors: list[FieldError]) -> str | None:
    if value is None:
        errors.append(FieldError("name", "is required"))
        return None
    if not isinstance(value, str):
        errors.append(FieldError("name", "must be a string"))
        return None
    name: str = value.strip()
    if not 1 <= len(name) <= 200:
        errors.append(FieldError("name", "must be 1 to 200 characters"))
        return None
    if _CONTROL.search(name):
        errors.append(FieldError("name", "must not contain control characters"))
        return None
    return name


#: The longest name DNS resolves (RFC 1035): a longer host is no receiver's.
MAX_HOST_LENGTH = 253


def validate_url(value: Any, field: str = "url") -> tuple[str | None, str | None]:
    """(url, None) if acceptable, else (None, the reason)."""
    if not isinstance(value, str) or not value:
        return None, "is required"
    if len(value) > 2048:
        return None, "must be at most 2048 characters"
    if _CONTROL.search(value) or " " in value:
        return None, "must not contain spaces or control characters"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        return None, f"is not a valid URL ({exc})"
    del port
    if parts.scheme not in ("http", "https"):
        return None, "must be an absolute http or https URL"
    if not parts.hostname:
        return None, "must name a host"
    if parts.username is not None or parts.password is not None:
        return None, "must not contain a user name or password; use an authentication method"
    if parts.fragment:
        return None, "must not contain a #fragment"
    if parts.port == 0:
        return None, "must not name port 0"
    try:
        # The host as the HTTP client sends it and connects to it (IDNA applied).
        # The final dot of a fully qualified name is not counted, as DNS does not.
        host = (URL(value).raw_host or "").removesuffix(".")
    except (ValueError, UnicodeError) as exc:
        return None, f"is not a valid URL ({exc})"
    if len(host) > MAX_HOST_LENGTH:
        return None, (
            f"must name a host of at most {MAX_HOST_LENGTH} characters as it is sent "
            f"(IDNA applied, this one has {len(host)})"
        )
    return value, None


def _url(value: Any, errors: list[FieldError]) -> str | None:
    url, problem = validate_url(value)
    if problem:
        errors.append(FieldError("url", problem))
    return url


def _ids(value: Any, field: str, errors: list[FieldError]) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        errors.append(FieldError(field, "must be a list of ids"))
        return ()
    if len(value) > MAX_SCOPE_IDS:
        errors.append(FieldError(field, f"must hold at most {MAX_SCOPE_IDS} ids"))
        return ()
    out: list[str] = []
    for i, item in enumerate(value):
        try:
            normalized = str(uuid.UUID(item)) if isinstance(item, str) else None
        except ValueError:
            normalized = None
        if normalized is None:
            errors.append(FieldError(f"{field}.{i}", "must be a UUID"))
        elif normalized not in out:
            out.append(normalized)
    return tuple(out)


def _bool(value: Any, field: str, errors: list[FieldError]) -> bool:
    if not isinstance(value, bool):
        errors.append(FieldError(field, "must be true or false"))
        return False
    return value
