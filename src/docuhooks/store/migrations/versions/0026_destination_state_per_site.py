"""each site keeps its own state of a destination; a host is keyed as the client reads it

Two ways one site could hold back another's calls to a shared host (found by a review that
played a hostile tenant):

- **One state for every site.** A destination's breaker, adaptive limit and `Retry-After`
  pause were kept once per `scheme://host:port`, whoever's calls had moved them. Many hosts
  serve many tenants, each on a path of its own; a site whose own path answered 429 with a
  day's `Retry-After`, or whose webhooks' timeouts were shorter than the host needs, paused
  or opened the breaker for every site there. A `destinations` row is now a site's state of
  a destination (`origin` holds `core.destinations.state_key`: the site's id, a space, the
  destination), and `docuhooks_claim` reads a webhook's through its site: the probe turn's
  update, and each hook's state. The adaptive limit bounds the site's own calls there; the
  cap on calls in flight to the destination still counts every site's. The rows move to
  their sites: each site with webhooks at a destination gets a copy of its row, under the
  destination as it is written from now on.
- **Another spelling of the host.** `webhooks.destination` kept the host as written, while
  the HTTP client connects to (and pools connections by) the host with IDNA applied:
  `１２７.0.0.1` and `127.0.0.1` were two destinations with one pool, so calls over one cap
  took the other's connections. Each webhook's destination is written again with
  `core.destinations.destination_of`, which now reads the host as the client does.

`CREATE OR REPLACE` keeps the function's arguments and results (a worker of the previous
version keeps working during a rolling upgrade, with the old keys: until it stops, its
claims read no state, as for a healthy destination).

A downgrade restores the function and forgets the states (every breaker closed, no limit,
no pause): a host that is still in trouble shows it again within a few calls.

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-07 03:00:00.000000
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import op

from docuhooks.core.destinations import destination_of, state_key

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: What `docuhooks_claim` (as 0025 left it) reads of a webhook's destination state, and how
#: it reads it through the webhook's site now.
_BY_SITE = (
    (
        "WHERE d.origin = probe.destination AND d.state <> 'closed'",
        "WHERE d.origin = probe.site_id || ' ' || probe.destination AND d.state <> 'closed'",
    ),
    (
        "FROM webhooks w LEFT JOIN destinations d ON d.origin = w.destination\n",
        "FROM webhooks w LEFT JOIN destinations d\n"
        "                ON d.origin = w.site_id || ' ' || w.destination\n",
    ),
    (
        """            destination_limit := destination_cap;
            IF hook.concurrency IS NOT NULL AND hook.concurrency < limit_ceiling THEN
                destination_limit := least(destination_cap, hook.concurrency);
            END IF;
""",
        """            destination_limit := destination_cap;
""",
    ),
    (
        """            SELECT count(*) INTO in_flight FROM flights f
                WHERE f.destination = hook.destination AND (f.expires_at >= claim_at) IS TRUE;
            share := least(share, destination_limit - in_flight);
""",
        """            SELECT count(*) INTO in_flight FROM flights f
                WHERE f.destination = hook.destination AND (f.expires_at >= claim_at) IS TRUE;
            share := least(share, destination_limit - in_flight);
            -- The site's own adaptive limit there bounds the site's own calls (0026).
            IF hook.concurrency IS NOT NULL AND hook.concurrency < limit_ceiling THEN
                SELECT count(*) INTO in_flight FROM flights f
                    WHERE f.destination = hook.destination AND f.site_id = hook.site_id
                        AND (f.expires_at >= claim_at) IS TRUE;
                share := least(share, hook.concurrency - in_flight);
            END IF;
""",
    ),
)


def _migration_0025() -> object:
    path = Path(__file__).with_name("0025_claim_plans_without_statistics.py")
    spec = importlib.util.spec_from_file_location("migration_0025", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def claim_function() -> str:
    """`docuhooks_claim` reading each webhook's destination state through its site."""
    function: str = _migration_0025().claim_function()  # type: ignore[attr-defined]
    for before, after in _BY_SITE:
        assert function.count(before) == 1, before
        function = function.replace(before, after)
    return function


_WEBHOOKS = sa.table(
    "webhooks",
    sa.column("id"),
    sa.column("site_id"),
    sa.column("url"),
    sa.column("destination"),
)
_STATE_COLUMNS = (
    "state",
    "failures",
    "since",
    "next_probe_at",
    "concurrency",
    "paused_until",
    "updated_at",
)
_DESTINATIONS = sa.table(
    "destinations", sa.column("origin"), *(sa.column(name) for name in _STATE_COLUMNS)
)


def upgrade() -> None:
    bind = op.get_bind()
    hosts = {
        row.origin: {name: getattr(row, name) for name in _STATE_COLUMNS}
        for row in bind.execute(sa.select(_DESTINATIONS)).all()
    }
    hooks = bind.execute(
        sa.select(_WEBHOOKS.c.id, _WEBHOOKS.c.site_id, _WEBHOOKS.c.url, _WEBHOOKS.c.destination)
    ).all()
    # Each site with webhooks at a destination gets a copy of its state, under the
    # destination as it is written from now on; of two spellings of one host, a breaker
    # not closed wins (the host was in trouble), then the first spelling in order.
    per_site: dict[str, dict[str, object]] = {}
    for hook in sorted(hooks, key=lambda hook: (hook.destination, hook.id)):
        state = hosts.get(hook.destination)
        if state is None:
            continue
        key = state_key(hook.site_id, destination_of(hook.url))
        kept = per_site.get(key)
        if kept is None or (kept["state"] == "closed" and state["state"] != "closed"):
            per_site[key] = state
    # Every row is a host's: none is kept (one statement, however many rows).
    bind.execute(_DESTINATIONS.delete())
    if per_site:
        bind.execute(
            _DESTINATIONS.insert(),
            [{"origin": key, **state} for key, state in sorted(per_site.items())],
        )
    for hook in hooks:
        destination = destination_of(hook.url)
        if destination != hook.destination:
            bind.execute(
                _WEBHOOKS.update().where(_WEBHOOKS.c.id == hook.id).values(destination=destination)
            )
    if bind.dialect.name == "postgresql":
        op.execute(claim_function())


def downgrade() -> None:
    op.execute("DELETE FROM destinations")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_migration_0025().claim_function())  # type: ignore[attr-defined]
