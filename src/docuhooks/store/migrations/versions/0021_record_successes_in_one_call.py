"""the recorder: a batch of plain successes in one call, run outside a transaction (PostgreSQL)

A worker writes its finished attempts in batches. A batch of plain successes (the common
case: healthy receivers) was seven round trips on PostgreSQL: `BEGIN`, the deliveries'
settle, the attempt rows, the webhooks' failure runs, the charts' roll-up, the calls'
`flights` rows, `COMMIT`. `docuhooks_record_successes` does all five statements in one
call, which the recorder runs with no transaction around it (a function call is a
transaction of its own), in the order every writer takes those rows: the deliveries', the
webhooks', then the `flights` rows.

It writes nothing, and raises, when the batch is not what it handles, and the recorder then
writes the batch as before, in a transaction, statement by statement:

- `DH001`: a delivery's lease was lost (another worker holds it, or it was deleted with
  its webhook): the recorder logs it and writes the attempt if the delivery still exists;
- `DH002`: a webhook of the batch is suspended (its success resumes it, which announces
  `WebhookResumed` in the same transaction).

The attempt rows and the roll-up's rows come as JSON arrays of the rows the recorder builds
(`attempt_log.attempt_row`, `rollup.Tally.rows`), the columns named here: `json`, not
`jsonb`, so the headers' objects are stored as they were sent and received (`jsonb` would
reorder their keys). The roll-up's
counts are this revision's `webhook_stats` columns: a migration that adds one must replace
this function too (a test compares them with `delivery.rollup.COUNT_COLUMNS`).

SQLite has no round trips to save: nothing to do there.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06 11:30:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SIGNATURE = (
    "docuhooks_record_successes(text, text[], integer[], timestamptz[], json, json, text[])"
)

#: `attempts`' columns, as `attempt_log.attempt_row` writes them.
ATTEMPT_COLUMNS = (
    "id",
    "delivery_id",
    "webhook_id",
    "site_id",
    "attempt_number",
    "started_at",
    "duration_ms",
    "request_method",
    "request_url",
    "request_headers",
    "status_code",
    "response_headers",
    "response_body",
    "error_class",
    "error",
)
#: `webhook_stats`' counts at this revision (`delivery.rollup.COUNT_COLUMNS`).
COUNT_COLUMNS = (
    "succeeded",
    "failed",
    "failed_timeout",
    "failed_connect",
    "failed_dns",
    "failed_tls",
    "failed_blocked",
    "failed_http_status",
    "failed_invalid_response",
    "budget_cut",
    *(f"latency_{i:02d}" for i in range(53)),
)


def _function() -> str:
    attempt_columns = ", ".join(ATTEMPT_COLUMNS)
    stat_columns = ", ".join(("webhook_id", "grain", "bucket_start", "site_id", *COUNT_COLUMNS))
    added = ",\n            ".join(f"{c} = s.{c} + EXCLUDED.{c}" for c in COUNT_COLUMNS)
    return f"""
CREATE FUNCTION docuhooks_record_successes(
    claim_owner text, delivery_ids text[], status_codes integer[], settled_at timestamptz[],
    attempt_rows json, stat_rows json, hook_ids text[]
) RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    settled integer;
BEGIN
    -- The deliveries' rows (in id order, as the heartbeat and the other writers of many
    -- take them), then the webhooks', then the calls' `flights` rows: the order in which
    -- every writer takes them, so no two of them each wait for the other.
    PERFORM 1 FROM deliveries d WHERE d.id = ANY(delivery_ids) ORDER BY d.id
        FOR NO KEY UPDATE;
    UPDATE deliveries d SET
        status = 'succeeded', attempts = d.attempts + 1, last_status_code = s.code,
        last_error_class = NULL, last_error = NULL, next_attempt_at = NULL,
        completed_at = s.at, lease_owner = NULL, lease_expires_at = NULL
    FROM unnest(delivery_ids, status_codes, settled_at) AS s(id, code, at)
    WHERE d.id = s.id AND d.lease_owner = claim_owner;
    GET DIAGNOSTICS settled = ROW_COUNT;
    IF settled < cardinality(delivery_ids) THEN
        RAISE EXCEPTION 'a lease of this batch was lost' USING ERRCODE = 'DH001';
    END IF;
    INSERT INTO attempts ({attempt_columns})
        SELECT {attempt_columns}
        FROM json_populate_recordset(NULL::attempts, attempt_rows);
    -- A success ends its webhook's failure run; one that would resume a suspended webhook
    -- is the statement-by-statement path's (it announces the resumption).
    UPDATE webhooks w SET consecutive_failures = 0, first_failure_at = NULL
        WHERE w.id = ANY(hook_ids) AND w.suspended_at IS NULL AND w.consecutive_failures > 0;
    PERFORM 1 FROM webhooks w WHERE w.id = ANY(hook_ids) AND w.suspended_at IS NOT NULL;
    IF FOUND THEN
        RAISE EXCEPTION 'a webhook of this batch is suspended' USING ERRCODE = 'DH002';
    END IF;
    INSERT INTO webhook_stats AS s ({stat_columns})
        SELECT {stat_columns}
        FROM json_populate_recordset(NULL::webhook_stats, stat_rows)
        ON CONFLICT (webhook_id, grain, bucket_start) DO UPDATE SET
            {added};
    DELETE FROM flights f WHERE f.owner = claim_owner AND f.delivery_id = ANY(delivery_ids);
    RETURN settled;
END
$$;
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_function())


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"DROP FUNCTION {_SIGNATURE}")
