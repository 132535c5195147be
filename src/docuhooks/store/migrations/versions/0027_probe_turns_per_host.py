"""a host that fails every probe sees one probe per interval from the whole installation

Since 0026 each site keeps its own breaker of a destination, and each took its own probe
turn: a dead host shared by ten sites whose breakers of it were open got ten probes per
interval. `probe_turns` holds one turn per destination, shared by every site: a claim takes
a site's probe only if it also takes the host's turn for the interval, so the sites whose
breakers of a host are open take turns between them while it fails every probe. A probe
its own server answers (below 500: a 5xx may be a proxy's answer for a host that is down)
deletes the host's row (`delivery.destinations`): the host is up, and each other site
probes as soon as its own breaker is due. A probe that leases nothing (an ordered webhook
whose next delivery is not due yet) gives the host's turn back.

`docuhooks_claim` takes a site's breaker row first, skipping one that is locked (a
recorder folding an outcome into it, which may then take the host's row to delete it: a
claim must not wait for that row while it holds the host's turn), then the host's turn.
`CREATE OR REPLACE` keeps the function's arguments and results: a worker of the previous
version calls this function too during a rolling upgrade, so its claims take the host's
turn; its candidates do not leave out a probe whose host's turn another site holds, so such
a probe costs its claim a share that leases nothing, until it stops.

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-07 06:00:00.000000
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import op

import docuhooks.store.schema

revision: str = "0027"
down_revision: str | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: How 0026's `docuhooks_claim` took a site's probe turn, and how it takes it now.
_SITE_TURN = """\
        UPDATE destinations d
            SET state = 'half_open', next_probe_at = claim_at + probe_interval,
                updated_at = claim_at
            WHERE d.origin = probe.site_id || ' ' || probe.destination AND d.state <> 'closed'
                AND d.next_probe_at <= claim_at;
        IF FOUND THEN
            probes_won := probes_won || probe.id::text;
        END IF;
"""
_SITE_AND_HOST_TURN = """\
        -- The site's breaker, if it is due a probe and no recorder holds its row (one that
        -- folds the host's answer into it takes the host's turn next, to give it back:
        -- waiting here while holding the host's turn could deadlock with it).
        PERFORM 1 FROM destinations d
            WHERE d.origin = probe.site_id || ' ' || probe.destination AND d.state <> 'closed'
                AND d.next_probe_at <= claim_at
            FOR UPDATE SKIP LOCKED;
        CONTINUE WHEN NOT FOUND;
        -- Then the host's turn, shared by every site (0027): while it fails every probe,
        -- the sites whose breakers of it are open send one per interval between them.
        INSERT INTO probe_turns (destination, next_at) VALUES (probe.destination, claim_at)
            ON CONFLICT (destination) DO NOTHING;
        UPDATE probe_turns t SET next_at = claim_at + probe_interval
            WHERE t.destination = probe.destination AND t.next_at <= claim_at;
        CONTINUE WHEN NOT FOUND;
        UPDATE destinations d
            SET state = 'half_open', next_probe_at = claim_at + probe_interval,
                updated_at = claim_at
            WHERE d.origin = probe.site_id || ' ' || probe.destination;
        probes_won := probes_won || probe.id::text;
"""


#: The end of a webhook's lease in `docuhooks_claim`, and the same followed by giving back the
#: turns of a probe that leased nothing.
_LEASED = """\
            SELECT leased.id::text FROM leased;
    END LOOP;
"""
_LEASED_OR_TURN_GIVEN_BACK = """\
            SELECT leased.id::text FROM leased;
        IF hook_probes[i] AND NOT FOUND THEN
            -- The probe found nothing it may send (an ordered webhook's next delivery is
            -- not due yet): the host's turn goes back to the other sites, and this site's
            -- breaker tries again at its next interval (0027).
            UPDATE probe_turns t SET next_at = claim_at WHERE t.destination = hook.destination;
            UPDATE destinations d SET state = 'open', updated_at = claim_at
                WHERE d.origin = hook.site_id || ' ' || hook.destination
                    AND d.state = 'half_open';
        END IF;
    END LOOP;
"""


def _migration_0026() -> object:
    path = Path(__file__).with_name("0026_destination_state_per_site.py")
    spec = importlib.util.spec_from_file_location("migration_0026", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def claim_function() -> str:
    """`docuhooks_claim` taking the host's probe turn with the site's."""
    function: str = _migration_0026().claim_function()  # type: ignore[attr-defined]
    for before, after in ((_SITE_TURN, _SITE_AND_HOST_TURN), (_LEASED, _LEASED_OR_TURN_GIVEN_BACK)):
        assert function.count(before) == 1, before
        function = function.replace(before, after)
    return function


def upgrade() -> None:
    op.create_table(
        "probe_turns",
        sa.Column("destination", sa.String(length=2100), nullable=False),
        sa.Column("next_at", docuhooks.store.schema.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("destination", name=op.f("pk_probe_turns")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(claim_function())


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_migration_0026().claim_function())  # type: ignore[attr-defined]
    op.drop_table("probe_turns")
