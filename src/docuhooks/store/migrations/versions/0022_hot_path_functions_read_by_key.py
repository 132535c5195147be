"""the claim's and the recorder's functions read rows by key, whatever the statistics say

`docuhooks_claim` (0019) and `docuhooks_record_successes` (0021) touch rows they name: a
webhook's oldest due deliveries, the deliveries of a batch, the calls' `flights` rows by
delivery. Every statement in them has an index that reads exactly those rows. PostgreSQL's
planner still chose to read whole tables when its statistics said they were small: on a
table not yet analyzed (a new installation, a server whose autovacuum is off or behind a
burst), or at a few thousand rows, it joined the batch's ids to a sequential scan of
`deliveries` to lease and to settle (3–4 ms a call at 5,000 rows, and still at 20,000),
and scanned `flights`, dead rows included, to forget the ended calls. On a drain of 5,000
deliveries on a new database: the leases' statement went from 46 to 34 µs a delivery, the
settle from 30 to 22, the forgetting of flights from 19 to 7.

Both functions now run with `enable_seqscan` off: a whole-table read is never the right
plan for them, and the planner takes the index whatever its estimates. `jit` is off too:
a plan that must still scan a table (none today) would carry the scan's penalty in its
cost, well past `jit_above_cost`, and compile on every call. A migration that replaces
either function (`CREATE OR REPLACE` drops its settings) must set them again;
`tests/delivery/test_hot_path_plans.py` fails if it does not.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06 14:10:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FUNCTIONS = (
    "docuhooks_claim(text, text[], text[], text[], integer[], boolean[], integer, integer,"
    " integer, boolean, timestamptz, timestamptz, interval)",
    "docuhooks_record_successes(text, text[], integer[], timestamptz[], json, json, text[])",
)
#: The settings each function runs with.
SETTINGS = {"enable_seqscan": "off", "jit": "off"}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for function in FUNCTIONS:
        for name, value in SETTINGS.items():
            op.execute(f"ALTER FUNCTION {function} SET {name} = {value}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for function in FUNCTIONS:
        for name in SETTINGS:
            op.execute(f"ALTER FUNCTION {function} RESET {name}")
