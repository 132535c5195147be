"""Every table, in SQLAlchemy Core. Migrations in `migrations/` are generated from this file.

Ids are UUID strings (portable across SQLite and PostgreSQL); timestamps are timezone-aware
UTC; lists and small documents are JSON. Secrets are stored only encrypted (`*_enc` columns).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator

from docuhooks.core.latency import BINS as LATENCY_BINS

#: The error classes the roll-up counts failures by (`delivery.transport.ErrorClass`'s values).
STATS_ERROR_CLASSES = (
    "timeout",
    "connect",
    "dns",
    "tls",
    "blocked",
    "http_status",
    "invalid_response",
)

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware datetimes on both backends (SQLite stores naive text otherwise)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        from datetime import UTC

        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        from datetime import UTC

        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _id(name: str = "id", **kw: object) -> sa.Column[str]:
    return sa.Column(name, sa.String(36), primary_key=True, **kw)  # type: ignore[arg-type]


def _fk(
    name: str, target: str, *, nullable: bool = False, ondelete: str = "CASCADE"
) -> sa.Column[str]:
    return sa.Column(
        name, sa.String(36), sa.ForeignKey(target, ondelete=ondelete), nullable=nullable
    )


def _ts(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, UtcDateTime(), nullable=nullable)


# --- identity ---------------------------------------------------------------------------------

sites = sa.Table(
    "sites",
    metadata,
    _id(),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("base_url", sa.String(2048), nullable=False),
    _ts("created_at"),
)

users = sa.Table(
    "users",
    metadata,
    _id(),
    _fk("site_id", "sites.id"),
    sa.Column("login_name", sa.String(320), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("email", sa.String(320), nullable=False),
    #: "UserAccount" or "ServicePrincipal".
    sa.Column("account_type", sa.String(32), nullable=False, server_default="UserAccount"),
    #: Service principals log in with (client name, principal name, password).
    sa.Column("client_name", sa.String(200), nullable=True),
    sa.Column("password_hash", sa.String(200), nullable=True),
    sa.Column("roles", sa.JSON(), nullable=False),
    sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true()),
    _ts("created_at"),
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    _id(),
    _fk("user_id", "users.id"),
    #: sha256 of the token; the token itself is shown once and never stored.
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False, server_default=""),
    _ts("created_at"),
    _ts("expires_at", nullable=True),
    _ts("last_used_at", nullable=True),
    #: The token's first characters (`secrets.token_prefix`), shown so people can tell their
    #: tokens apart; null for tokens made before it was kept.
    sa.Column("prefix", sa.String(16), nullable=True),
)

#: Admin UI sign-ins. The id is the sha256 of the cookie's random token, as for API
#: tokens, so a copy of the table cannot sign anyone in; the CSRF token is per session.
ui_sessions = sa.Table(
    "ui_sessions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    _fk("user_id", "users.id"),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    _ts("created_at"),
    #: The latest the session can last, however active it is.
    _ts("expires_at"),
    _ts("last_seen_at"),
    sa.Index("ix_ui_sessions_user", "user_id"),
    sa.Index("ix_ui_sessions_expires", "expires_at"),
)

#: Wrong passwords, one row per throttling key (`login:<name>`, `client:<address>`) per
#: attempt, kept for the throttle's window: shared by every process on the database.
sign_in_failures = sa.Table(
    "sign_in_failures",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(400), nullable=False),
    _ts("failed_at"),
    sa.Index("ix_sign_in_failures_key", "key", "failed_at"),
    sa.Index("ix_sign_in_failures_failed_at", "failed_at"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    _id(),
    _fk("site_id", "sites.id"),
    sa.Column("actor_id", sa.String(36), nullable=True),
    sa.Column("actor_login", sa.String(320), nullable=True),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("object_type", sa.String(64), nullable=False),
    sa.Column("object_id", sa.String(36), nullable=False),
    sa.Column("details", sa.JSON(), nullable=False),
    _ts("created_at"),
    sa.Index("ix_audit_log_site_created", "site_id", "created_at"),
)

# --- webhooks -----------------------------------------------------------------------------------

webhooks = sa.Table(
    "webhooks",
    metadata,
    _id(),
    _fk("site_id", "sites.id"),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("url", sa.String(2048), nullable=False),
    sa.Column("event_type", sa.String(64), nullable=False),
    sa.Column("interview_event_name", sa.String(200), nullable=True),
    sa.Column("auth_method", sa.String(32), nullable=False),
    sa.Column("access_token_enc", sa.Text(), nullable=True),
    sa.Column("secret_kid", sa.String(64), nullable=True),
    sa.Column("secret_enc", sa.Text(), nullable=True),
    sa.Column("previous_secret_kid", sa.String(64), nullable=True),
    sa.Column("previous_secret_enc", sa.Text(), nullable=True),
    _ts("previous_secret_expires_at", nullable=True),
    #: The previous secret whose grace period's end has been announced
    #: (`WebhookSecretGraceEnding`, `delivery.operational`): once per rotation.
    sa.Column("grace_notice_kid", sa.String(64), nullable=True),
    sa.Column("request_verb", sa.String(8), nullable=False),
    sa.Column("active", sa.Boolean(), nullable=False),
    #: Set while the webhook is suspended after repeated failures.
    _ts("suspended_at", nullable=True),
    sa.Column("status_reason", sa.String(500), nullable=True),
    sa.Column("accept_untrusted_ssl", sa.Boolean(), nullable=False),
    sa.Column("work_group_ids", sa.JSON(), nullable=False),
    sa.Column("template_ids", sa.JSON(), nullable=False),
    sa.Column("sort_order", sa.Integer(), nullable=False),
    sa.Column("timeout_seconds", sa.Integer(), nullable=False),
    sa.Column("ordered_delivery", sa.Boolean(), nullable=False),
    #: Calls in flight to this webhook at most, across every worker.
    sa.Column("max_concurrency", sa.Integer(), nullable=False, server_default="10"),
    #: `scheme://host:port` of `url` (`core.destinations.destination_of`): whose breaker
    #: and adaptive limit this webhook's calls obey.
    sa.Column("destination", sa.String(2100), nullable=False, server_default=""),
    #: When a claim last took deliveries of this webhook: claims serve webhooks in turn,
    #: the longest unserved first, so no webhook's backlog holds another's deliveries back.
    _ts("claimed_at", nullable=True),
    sa.Column("consecutive_failures", sa.Integer(), nullable=False, server_default="0"),
    _ts("first_failure_at", nullable=True),
    #: While suspended: when the next probe attempt may go.
    _ts("next_probe_at", nullable=True),
    _ts("created_at"),
    sa.Column("created_by", sa.String(36), nullable=True),
    _ts("modified_at"),
    sa.Column("modified_by", sa.String(36), nullable=True),
    sa.UniqueConstraint("site_id", "name"),
    # Matching starts from this index, so it never reads another site's or another
    # event type's webhooks.
    sa.Index("ix_webhooks_match", "site_id", "event_type", "active", "interview_event_name"),
    # Workers look for suspended webhooks due a probe without reading the others.
    sa.Index("ix_webhooks_next_probe", "next_probe_at"),
    sa.Index("ix_webhooks_destination", "destination"),
    sa.Index("ix_webhooks_claimed", "claimed_at"),
    # The upkeep finds secret rotations by the end of their grace period.
    sa.Index("ix_webhooks_grace_ends", "previous_secret_expires_at"),
)

#: The health of each destination that has shown any trouble (`core.destinations`); one with
#: no row is healthy: closed breaker, full limit, no pause.
destinations = sa.Table(
    "destinations",
    metadata,
    #: A site's state of a destination: `core.destinations.state_key`, the site's id and the
    #: destination's `scheme://host:port`, so that each site's breaker, adaptive limit and
    #: pause of a host are its own (`state_key_of_webhook`).
    sa.Column("origin", sa.String(2100), primary_key=True),
    #: "closed", "open" or "half_open".
    sa.Column("state", sa.String(16), nullable=False),
    #: Consecutive failures that count toward opening the breaker.
    sa.Column("failures", sa.Integer(), nullable=False),
    _ts("since", nullable=True),
    _ts("next_probe_at", nullable=True),
    #: The adaptive limit on calls in flight to this destination.
    sa.Column("concurrency", sa.Integer(), nullable=False),
    #: A `Retry-After` holds the whole destination back, for the site, until then.
    _ts("paused_until", nullable=True),
    _ts("updated_at"),
)


def state_key_of_webhook(table: sa.FromClause | None = None) -> sa.ColumnElement[str]:
    """The `destinations.origin` of a webhook row's site and destination, in SQL
    (`core.destinations.state_key`)."""
    hooks = webhooks if table is None else table
    return hooks.c.site_id.concat(" ").concat(hooks.c.destination)


#: A destination's probe turn, shared by every site: while a host fails every probe, the
#: sites whose breakers of it are open take one turn per interval between them, so it sees
#: one probe per interval from the whole installation (`delivery.claims`). A probe its
#: server answers deletes the row (`delivery.destinations`), and each other site probes as soon as
#: its own breaker is due.
probe_turns = sa.Table(
    "probe_turns",
    metadata,
    #: `scheme://host:port`, as `webhooks.destination` writes it.
    sa.Column("destination", sa.String(2100), primary_key=True),
    #: When the next probe of the destination may go, whichever site's it is.
    _ts("next_at"),
)


#: One row per (webhook, scope value): matching joins here instead of scanning JSON lists.
webhook_scopes = sa.Table(
    "webhook_scopes",
    metadata,
    _fk("webhook_id", "webhooks.id"),
    #: "workgroup" or "template".
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("scope_id", sa.String(36), nullable=False),
    sa.PrimaryKeyConstraint("webhook_id", "kind", "scope_id"),
    sa.Index("ix_webhook_scopes_lookup", "kind", "scope_id"),
)

#: Sends a site's administrators make by hand (test sends, redeliveries), one row each of its
#: `kind`, kept for the limits' window (`delivery.manual_sends`): shared by every process on
#: the database.
manual_sends = sa.Table(
    "manual_sends",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    _fk("site_id", "sites.id"),
    #: `test` or `redelivery`.
    sa.Column("kind", sa.String(16), nullable=False),
    _ts("sent_at"),
    sa.Index("ix_manual_sends_site_kind_sent", "site_id", "kind", "sent_at"),
)

# --- outbox: events, deliveries, attempts -------------------------------------------------------

events = sa.Table(
    "events",
    metadata,
    _id(),
    _fk("site_id", "sites.id"),
    sa.Column("event_type", sa.String(64), nullable=False),
    #: The event object, exactly as receivers get it.
    sa.Column("payload", sa.JSON(), nullable=False),
    sa.Column("work_item_id", sa.String(36), nullable=True),
    _ts("created_at"),
    #: The W3C trace context the event was written in (`core.tracecontext`): every call it
    #: causes continues that trace. None for events written before it was kept.
    sa.Column("traceparent", sa.String(55), nullable=True),
    sa.Column("tracestate", sa.String(512), nullable=True),
    sa.Index("ix_events_site_created", "site_id", "created_at"),
    # Retention: the oldest events first, whatever their site (`delivery.pruning`).
    sa.Index("ix_events_created", "created_at", "id"),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    _id(),
    _fk("event_id", "events.id"),
    _fk("webhook_id", "webhooks.id"),
    _fk("site_id", "sites.id"),
    #: pending → (delivering) → succeeded | failed; `sync` rows record interview calls.
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    _ts("next_attempt_at", nullable=True),
    sa.Column("lease_owner", sa.String(64), nullable=True),
    _ts("lease_expires_at", nullable=True),
    #: For ordered delivery: the work item, and the version number within it.
    sa.Column("ordering_key", sa.String(36), nullable=True),
    sa.Column("ordering_seq", sa.Integer(), nullable=True),
    sa.Column("last_status_code", sa.Integer(), nullable=True),
    sa.Column("last_error_class", sa.String(32), nullable=True),
    sa.Column("last_error", sa.String(1000), nullable=True),
    _ts("created_at"),
    _ts("completed_at", nullable=True),
    sa.Index("ix_deliveries_due", "status", "next_attempt_at"),
    sa.Index("ix_deliveries_webhook_created", "webhook_id", "created_at"),
    sa.Index("ix_deliveries_event", "event_id"),
    # An ordered webhook's pending deliveries of one work item, by version
    # (`queries.first_in_order`).
    sa.Index(
        "ix_deliveries_ordering",
        "webhook_id",
        "ordering_key",
        "ordering_seq",
        sqlite_where=sa.text("status = 'pending' AND ordering_key IS NOT NULL"),
        postgresql_where=sa.text("status = 'pending' AND ordering_key IS NOT NULL"),
    ),
    # A webhook's due deliveries in the order a claim takes them.
    sa.Index(
        "ix_deliveries_webhook_due",
        "webhook_id",
        "next_attempt_at",
        "id",
        sqlite_where=sa.text("status = 'pending'"),
        postgresql_where=sa.text("status = 'pending'"),
    ),
    # Retention: finished deliveries by when they finished, the oldest first
    # (`delivery.pruning`); pending ones have no `completed_at` and stay out of it.
    sa.Index(
        "ix_deliveries_completed",
        "completed_at",
        sqlite_where=sa.text("completed_at IS NOT NULL"),
        postgresql_where=sa.text("completed_at IS NOT NULL"),
    ),
    # A webhook's failed deliveries by creation: a recovery's batches and its count read
    # exactly the entries they use, however many others the window holds.
    sa.Index(
        "ix_deliveries_webhook_failed",
        "webhook_id",
        "created_at",
        "id",
        sqlite_where=sa.text("status = 'failed'"),
        postgresql_where=sa.text("status = 'failed'"),
    ),
)


def is_pending(table: sa.FromClause = deliveries) -> sa.ColumnElement[bool]:
    """`status = 'pending'` with the value written into the SQL: the predicate of the partial
    indexes above, which a query can use only if it states that predicate itself. As a
    bound parameter, PostgreSQL's *generic* plan of the prepared statement (asyncpg prepares
    every statement, and after five runs PostgreSQL may keep a generic plan) could not prove
    it, and read a webhook's deliveries through another index, settled ones included."""
    return table.c.status == sa.literal_column("'pending'")


def not_held_in_order(now: datetime) -> sa.ColumnElement[bool]:
    """Not a delivery `delivery.outbox.hold_in_order` holds back (a work item's later version
    waiting for an earlier one still in post-processing: never attempted, due later): what
    brings a webhook's backlog forward (a resume, a probe's success) must leave those to
    `release_in_order`, or the later version reaches an ordered webhook first."""
    return sa.or_(
        deliveries.c.ordering_key.is_(None),
        deliveries.c.attempts > 0,
        deliveries.c.next_attempt_at <= now,
    )


#: Recoveries (`POST /webhooks/{id}/recover`): re-sending a webhook's failed deliveries of a
#: time window, done by a background job in short batches so no transaction grows with the
#: log. `cursor_*` is the last delivery examined (the keyset the next batch starts after);
#: the lease lets any process take over a job whose process died.
recovery_jobs = sa.Table(
    "recovery_jobs",
    metadata,
    _id(),
    _fk("site_id", "sites.id"),
    _fk("webhook_id", "webhooks.id"),
    _ts("since"),
    #: The end of the window: as asked, else when the job was made (never later, so the
    #: job does not chase failures of the deliveries it queued itself).
    _ts("until"),
    #: queued → running → succeeded | failed
    sa.Column("status", sa.String(16), nullable=False),
    #: Failed deliveries in the window, once counted; examined so far; queued again so far.
    sa.Column("total", sa.Integer(), nullable=True),
    sa.Column("done", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("redelivered", sa.Integer(), nullable=False, server_default="0"),
    _ts("cursor_created_at", nullable=True),
    sa.Column("cursor_id", sa.String(36), nullable=True),
    sa.Column("lease_owner", sa.String(64), nullable=True),
    _ts("lease_expires_at", nullable=True),
    #: When a runner last took the job for a turn: the runners take the sites in turn, the
    #: one whose jobs were served longest ago first (`delivery.recovery`).
    _ts("claimed_at", nullable=True),
    sa.Column("error", sa.String(1000), nullable=True),
    sa.Column("created_by_id", sa.String(36), nullable=True),
    sa.Column("created_by_login", sa.String(255), nullable=False),
    _ts("created_at"),
    _ts("updated_at"),
    _ts("finished_at", nullable=True),
    sa.Index("ix_recovery_jobs_webhook_created", "webhook_id", "created_at"),
    sa.Index("ix_recovery_jobs_status", "status", "lease_expires_at"),
    sa.Index("ix_recovery_jobs_site_claimed", "site_id", "claimed_at"),
    #: A webhook's recovery in progress, found among every one it ever had.
    sa.Index("ix_recovery_jobs_webhook_status", "webhook_id", "status"),
)

#: The calls in flight: one row per leased delivery, written with its lease and removed when
#: its outcome is written, so a claim counts a webhook's (and a destination's) calls in flight
#: from a small table. The lease itself stays on `deliveries`, whose pages are kept for HOT
#: updates: no index there may hold a lease column.
flights = sa.Table(
    "flights",
    metadata,
    sa.Column(
        "delivery_id",
        sa.String(36),
        sa.ForeignKey("deliveries.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("webhook_id", sa.String(36), nullable=False),
    sa.Column("site_id", sa.String(36), nullable=False),
    sa.Column("destination", sa.String(2100), nullable=False),
    sa.Column("owner", sa.String(64), nullable=False),
    #: The lease's end: a row past it belongs to a dead worker and counts for nothing.
    _ts("expires_at"),
    sa.Index("ix_flights_webhook", "webhook_id", "expires_at"),
    sa.Index("ix_flights_site", "site_id", "expires_at"),
    sa.Index("ix_flights_destination", "destination", "expires_at"),
)

attempts = sa.Table(
    "attempts",
    metadata,
    _id(),
    _fk("delivery_id", "deliveries.id"),
    sa.Column("webhook_id", sa.String(36), nullable=False),
    sa.Column("site_id", sa.String(36), nullable=False),
    sa.Column("attempt_number", sa.Integer(), nullable=False),
    _ts("started_at"),
    sa.Column("duration_ms", sa.Float(), nullable=False),
    sa.Column("request_method", sa.String(8), nullable=False),
    sa.Column("request_url", sa.Text(), nullable=False),
    sa.Column("request_headers", sa.JSON(), nullable=False),
    sa.Column("status_code", sa.Integer(), nullable=True),
    sa.Column("response_headers", sa.JSON(), nullable=True),
    sa.Column("response_body", sa.Text(), nullable=True),
    sa.Column("error_class", sa.String(32), nullable=True),
    sa.Column("error", sa.String(1000), nullable=True),
    sa.Index("ix_attempts_delivery", "delivery_id", "attempt_number"),
    sa.Index("ix_attempts_started", "started_at"),
)

#: Each webhook's attempts by hour (48 h) and by day (30 days): counts by outcome and a latency
#: histogram (`core.latency`). Hours are added to in the recorder's batch transaction; an
#: hour is folded into its day when it ages out (`delivery.rollup`).
webhook_stats = sa.Table(
    "webhook_stats",
    metadata,
    _fk("webhook_id", "webhooks.id"),
    #: "hour" or "day"; `bucket_start` is the UTC hour or day the attempts started in.
    sa.Column("grain", sa.String(4), nullable=False),
    _ts("bucket_start"),
    sa.Column("site_id", sa.String(36), nullable=False),
    sa.Column("succeeded", sa.BigInteger(), nullable=False),
    sa.Column("failed", sa.BigInteger(), nullable=False),
    *(
        sa.Column(f"failed_{error_class}", sa.BigInteger(), nullable=False)
        for error_class in STATS_ERROR_CLASSES
    ),
    #: Interview calls the step's budget ended (also counted as failed timeouts).
    sa.Column("budget_cut", sa.BigInteger(), nullable=False),
    *(
        sa.Column(f"latency_{index:02d}", sa.BigInteger(), nullable=False)
        for index in range(LATENCY_BINS)
    ),
    sa.PrimaryKeyConstraint("webhook_id", "grain", "bucket_start"),
    sa.Index("ix_webhook_stats_site", "site_id", "grain", "bucket_start"),
    sa.Index("ix_webhook_stats_bucket", "grain", "bucket_start"),
)

#: Delivery workers that are running, each refreshing its heartbeat: the fleet, for metrics.
workers = sa.Table(
    "workers",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("hostname", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer(), nullable=False),
    _ts("started_at"),
    _ts("heartbeat_at"),
)

#: The installation's one row: a check of the secret key its stored secrets are encrypted
#: with (`identity.installation_key`), so that a process given another key stops at start
#: instead of failing every call it signs.
installation = sa.Table(
    "installation",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("key_check", sa.String(64), nullable=False),
    _ts("created_at"),
    sa.CheckConstraint("id = 1", name="one_row"),
)

# --- the document platform ----------------------------------------------------------------------

work_groups = sa.Table(
    "work_groups",
    metadata,
    _id(),
    _fk("site_id", "sites.id"),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("description", sa.String(2000), nullable=False, server_default=""),
    _ts("created_at"),
    sa.UniqueConstraint("site_id", "name"),
)

templates = sa.Table(
    "templates",
    metadata,
    _id(),
    _fk("site_id", "sites.id"),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("file_name", sa.String(255), nullable=False),
    sa.Column("content", sa.LargeBinary(), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    #: Variable definitions: [{name, type, repeatDepth, options}].
    sa.Column("variables", sa.JSON(), nullable=False),
    #: How many `variables` there are: what lists of templates show, so that they need not
    #: read (and decode) every template's definitions, up to about a megabyte each.
    sa.Column("variable_count", sa.Integer(), nullable=False, server_default="0"),
    #: Names of the interview event elements (buttons firing CustomInterviewEvent).
    sa.Column("event_elements", sa.JSON(), nullable=False),
    _ts("created_at"),
    sa.Column("created_by", sa.String(36), nullable=True),
    sa.UniqueConstraint("site_id", "name"),
)


def _answers_size() -> sa.Column[int]:
    """An answer set's stored size. Its default is for rows written before it was kept
    (migration 0032 fills those in); every write of answers sets it."""
    return sa.Column("answers_size", sa.BigInteger(), nullable=False, server_default="0")


work_items = sa.Table(
    "work_items",
    metadata,
    _id(),
    _fk("site_id", "sites.id"),
    _fk("work_group_id", "work_groups.id"),
    _fk("template_id", "templates.id"),
    sa.Column("name", sa.String(200), nullable=False),
    _ts("created_at"),
    sa.Column("created_by", sa.String(36), nullable=True),
    sa.Index("ix_work_items_site_created", "site_id", "created_at"),
    # Whether a template is in use (deleting it), the list by template, the delete's cascade.
    sa.Index("ix_work_items_template", "template_id"),
)

work_item_versions = sa.Table(
    "work_item_versions",
    metadata,
    _id(),
    _fk("work_item_id", "work_items.id"),
    _fk("site_id", "sites.id"),
    sa.Column("version_number", sa.Integer(), nullable=False),
    #: InProgress, PostProcessing, Completed, Failed.
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("answers", sa.JSON(), nullable=False),
    #: The bytes of `answers` as stored (their JSON text), written with them: what the
    #: site's storage quota counts of them (`platform.storage`, whose running totals a
    #: trigger keeps as it changes).
    _answers_size(),
    #: What happened in post-processing, shown on the version.
    sa.Column("post_processing", sa.JSON(), nullable=True),
    _ts("post_processing_deadline", nullable=True),
    sa.Column("complete_token_hash", sa.String(64), nullable=True),
    #: While PostProcessing: when a driver should next act on the version (call the
    #: receiver, or give up at the deadline). A driver calling it moves this past the call's
    #: timeout, so it is also the lease that keeps two processes from calling at once.
    _ts("post_processing_due_at", nullable=True),
    _ts("created_at"),
    sa.Column("created_by", sa.String(36), nullable=True),
    _ts("completed_at", nullable=True),
    #: The trace context of the request that finished the interview, kept for the
    #: post-processing call and the completion event that follow it in the background.
    sa.Column("traceparent", sa.String(55), nullable=True),
    sa.Column("tracestate", sa.String(512), nullable=True),
    sa.UniqueConstraint("work_item_id", "version_number"),
    sa.Index("ix_work_item_versions_due", "status", "post_processing_due_at"),
    # A site's storage counted again from its rows (`platform.storage.recount`, and the sums
    # migration 0035 started the running totals from): from the index alone.
    sa.Index("ix_work_item_versions_site_answers_size", "site_id", "answers_size"),
)


def _document_columns() -> list[sa.Column[Any]]:
    """A stored document: `documents` and the originals kept during post-processing."""
    return [
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("file_name", sa.String(255), nullable=False),
        sa.Column("content_type", sa.String(255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("assembled_order", sa.Integer(), nullable=False),
        _ts("created_at"),
    ]


documents = sa.Table(
    "documents",
    metadata,
    _id(),
    _fk("version_id", "work_item_versions.id"),
    _fk("site_id", "sites.id"),
    *_document_columns(),
    sa.Index("ix_documents_version_order", "version_id", "assembled_order"),
    # A site's storage counted again from its rows (`platform.storage.recount`): its
    # documents' sizes summed from the index alone.
    sa.Index("ix_documents_site_size", "site_id", "size"),
)

#: The documents a version had when it entered PostProcessing, kept until it completes: a
#: failed or late post-processing puts them back, whatever the receiver changed meanwhile.
post_processing_originals = sa.Table(
    "post_processing_originals",
    metadata,
    sa.Column("id", sa.String(36), nullable=False),
    _fk("version_id", "work_item_versions.id"),
    _fk("site_id", "sites.id"),
    *_document_columns(),
    sa.PrimaryKeyConstraint("version_id", "id"),
    # A site's storage (`platform.storage`) sums its versions' originals by version.
    sa.Index("ix_post_processing_originals_site", "site_id", "version_id", "size"),
)

interviews = sa.Table(
    "interviews",
    metadata,
    _id(),
    _fk("site_id", "sites.id"),
    _fk("work_item_id", "work_items.id"),
    _fk("version_id", "work_item_versions.id"),
    sa.Column("answers", sa.JSON(), nullable=False),
    #: As the version's (`work_item_versions.answers_size`): an interview keeps a copy.
    _answers_size(),
    #: open or finished.
    sa.Column("status", sa.String(16), nullable=False),
    _ts("created_at"),
    sa.Column("created_by", sa.String(36), nullable=True),
    _ts("finished_at", nullable=True),
    # Opening, finishing and post-processing look up a version's open interview; without
    # this every interview open scanned the whole table.
    sa.Index("ix_interviews_version_status", "version_id", "status"),
    # Deleting a work item removes its interviews (PostgreSQL's cascade looks them up).
    sa.Index("ix_interviews_work_item", "work_item_id"),
    # A site's storage counted again from its rows (`platform.storage.recount`): its
    # interviews' answers from the index alone.
    sa.Index("ix_interviews_site_answers_size", "site_id", "answers_size"),
)

#: A site's storage (`platform.storage`) as running totals: a row for each change to what it
#: keeps, the bytes and files it added (negative: freed), written by triggers on the tables
#: counted (documents, templates, answer sets: migration 0035), never by the code, and
#: folded into one row per site now and then. What a site keeps is the sum of its rows.
#: Rows are only ever added (and folded), so writers of a site never wait for one another
#: here. No foreign key to `sites`: its check would lock the site's row on every write, and
#: a site's delete would cascade to rows whose triggers then count it for a site gone.
storage_usage = sa.Table(
    "storage_usage",
    metadata,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("site_id", sa.String(36), nullable=False),
    sa.Column("bytes", sa.BigInteger(), nullable=False),
    sa.Column("files", sa.BigInteger(), nullable=False),
    # A site's totals summed from the index alone.
    sa.Index("ix_storage_usage_site", "site_id", "bytes", "files"),
)
