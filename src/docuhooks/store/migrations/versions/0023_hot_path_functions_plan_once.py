"""the claim's and the recorder's functions plan each statement once per connection

PL/pgSQL keeps a plan for each statement of a function, and by default PostgreSQL plans a
statement with parameters afresh on every call ("custom" plans) until it judges one plan
without the values ("generic") as cheap. For the statements of `docuhooks_claim` (0019)
and `docuhooks_record_successes` (0021) it never did: counted with `pg_stat_statements`
over a steady stream of 300 events a second, every one of them was planned again on every
call, 30–420 µs each, about 0.4 ms of a claim's 1.5 ms on the server and 0.5 ms of a batch
of successes' 1.9 ms. The values change nothing in these plans: each statement reads
rows it names by a key that has an index (the ids of a batch, a webhook's due deliveries,
a site's row), and the functions run with `enable_seqscan` off (0022), so the plan made
without the values is the one made with them.

Both functions now run with `plan_cache_mode = force_generic_plan`: each statement is
planned once per connection and the plan kept. As with 0022's settings, a migration that
replaces either function (`CREATE OR REPLACE` drops its settings) must set this again;
`tests/delivery/test_hot_path_plans.py` fails if it does not, and shows the plans the
statements run with.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06 17:40:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FUNCTIONS = (
    "docuhooks_claim(text, text[], text[], text[], integer[], boolean[], integer, integer,"
    " integer, boolean, timestamptz, timestamptz, interval)",
    "docuhooks_record_successes(text, text[], integer[], timestamptz[], json, json, text[])",
)
#: The setting each function runs with, besides 0022's.
SETTINGS = {"plan_cache_mode": "force_generic_plan"}


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
