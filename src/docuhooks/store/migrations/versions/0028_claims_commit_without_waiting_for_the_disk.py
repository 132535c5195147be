"""a claim's commit does not wait for the disk (PostgreSQL)

`docuhooks_claim_and_read` (0024) commits the claim's leases before it reads their jobs,
and with `synchronous_commit = on` that commit waited for its WAL to reach the disk: about
a quarter of a millisecond here, in the path of every delivery from its commit to its
receipt. Nothing in a claim needs to survive a crash of the server: its leases, `flights`
rows, round-robin stamps and probe turns only coordinate workers, and a claim lost with
the server's last fraction of a second is a delivery claimed again (sent twice at most,
which at-least-once allows). And a claim is never lost behind its outcome: the recorder's
commit, which waits for the disk, flushes the WAL up to it, the claim's included. So the
claim's transaction sets `synchronous_commit` to `off` for itself (`set_config`, local to
the transaction: a procedure that commits cannot have settings of its own). Everything
else a worker or the API commits still waits for the disk.

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-07 07:00:00.000000
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from alembic import op

revision: str = "0028"
down_revision: str | None = "0027"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COMMIT = """\
    -- The leases are kept, and the sites' and webhooks' locks released, before the jobs
    -- are read and sent.
    COMMIT;
"""
_COMMIT_WITHOUT_WAITING = """\
    -- The leases are kept, and the sites' and webhooks' locks released, before the jobs
    -- are read and sent. Without waiting for the disk (0028): a claim lost in a crash of
    -- the server is a delivery claimed again.
    PERFORM set_config('synchronous_commit', 'off', true);
    COMMIT;
"""


def _procedure_0024() -> str:
    path = Path(__file__).with_name("0024_claim_returns_its_jobs.py")
    spec = importlib.util.spec_from_file_location("migration_0024", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text: str = module._CLAIM_AND_READ
    return text.replace("CREATE PROCEDURE", "CREATE OR REPLACE PROCEDURE", 1)


def claim_and_read_procedure() -> str:
    """`docuhooks_claim_and_read`, committing its claim without waiting for the disk."""
    procedure = _procedure_0024()
    assert procedure.count(_COMMIT) == 1
    return procedure.replace(_COMMIT, _COMMIT_WITHOUT_WAITING)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(claim_and_read_procedure())


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_procedure_0024())
