"""the claim's counts and leases keep their index plans whatever the statistics say

Two kinds of statement in `docuhooks_claim` (0019) kept plans, for the connection
(`plan_cache_mode = force_generic_plan`, 0023), that the statistics of the moment had
chosen, and those could cost a claim a large part of a second later:

- **The counts of calls in flight** stated the expiry as an index condition, which every
  `flights` index carries (second). A plan made while `flights` was empty (vacuumed to no
  pages, as when idle) counted a webhook's calls by scanning the destinations' index
  whole, once a burst had filled the table, until it was analyzed. The expiry is now a
  filter (`IS TRUE`), which leaves each count one index to read: its own.
- **The lease**'s `UPDATE` joined the chosen deliveries to `deliveries` by id; once
  analyzed at about 10,000 rows, the kept plan was a merge join that read the whole
  primary key (4,800 entries for a share of 64: 4.8 ms instead of 2.3). It now updates
  `WHERE id = ANY(ARRAY(…chosen…))`, a lookup per id whatever the plan.

`CREATE OR REPLACE` resets a function's settings, so they are stated with it. Its
arguments and results are unchanged, for workers of the previous version during a
rolling upgrade.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-06 21:00:00.000000
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The settings of every function on the worker's hot path (migrations 0022 and 0023).
SETTINGS = """
SET enable_seqscan = off
SET jit = off
SET plan_cache_mode = force_generic_plan
"""

_JOINED = "                FROM chosen WHERE d.id = chosen.id\n"
_BY_ID = "                WHERE d.id = ANY(ARRAY(SELECT chosen.id FROM chosen))\n"


def _claim_of_0019() -> str:
    """`docuhooks_claim` as migration 0019 wrote it."""
    path = Path(__file__).with_name("0019_claim_in_one_call.py")
    spec = importlib.util.spec_from_file_location("migration_0019", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    function: str = module._FUNCTION
    assert function.count(_JOINED) == 1
    return function


_COUNTED_LIVE = "AND f.expires_at >= claim_at;"
_COUNTED_LIVE_BY_ITS_INDEX = "AND (f.expires_at >= claim_at) IS TRUE;"


def _replacing(function: str) -> str:
    """`function`'s definition as one that replaces it, with its settings stated."""
    return function.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1).replace(
        "LANGUAGE plpgsql VOLATILE AS $$", f"LANGUAGE plpgsql VOLATILE{SETTINGS}AS $$"
    )


def claim_function() -> str:
    """`docuhooks_claim` with its lease by id, its counts each on its own index, and its
    settings stated."""
    function = _claim_of_0019()
    assert function.count(_COUNTED_LIVE) == 5
    return _replacing(
        function.replace(_JOINED, _BY_ID).replace(_COUNTED_LIVE, _COUNTED_LIVE_BY_ITS_INDEX)
    )


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(claim_function())


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_replacing(_claim_of_0019()))
