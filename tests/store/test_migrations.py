"""The migrations build exactly the schema that `store/schema.py` describes, on both stores,
so a table or column added to one and not the other is caught here, not in production."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from docuhooks.context import AppContext
from docuhooks.store.database import alembic_config
from docuhooks.store.schema import metadata


def _differences(connection: sa.Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": False})
    return list(compare_metadata(context, metadata))


async def test_migrations_build_the_schema_the_code_describes(ctx: AppContext) -> None:
    async with ctx.db.engine.connect() as conn:
        differences = await conn.run_sync(_differences)
    assert differences == []


async def test_the_database_is_at_the_single_head(ctx: AppContext) -> None:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert len(heads) == 1, f"migrations have several heads: {heads}"
    assert await ctx.db.current_revision() == heads[0]


#: The tables the storage quota counts, whose triggers keep each site's running totals
#: (migration 0035).
_COUNTED = ("documents", "templates", "work_item_versions", "interviews")


async def test_every_table_the_quota_counts_keeps_its_triggers_at_head(ctx: AppContext) -> None:
    """The running totals count what the triggers see: a later migration that rebuilds one
    of these tables on SQLite (`batch_alter_table`, which autogenerate writes there,
    `render_as_batch`, for a column altered or dropped) drops its triggers with it, and every
    write to it after goes uncounted. Such a migration must make them again; this names
    the ones missing."""
    query = (
        "SELECT tbl_name, name FROM sqlite_master WHERE type = 'trigger'"
        if ctx.db.is_sqlite
        else "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "WHERE NOT t.tgisinternal AND t.tgenabled = 'O'"
    )
    async with ctx.db.read() as conn:
        found = {
            (str(table), str(name))
            for table, name in (await conn.execute(sa.text(query))).all()
            if str(name).startswith("storage_usage_")
        }
    expected = {
        (table, f"storage_usage_{table}_{change}")
        for table in _COUNTED
        for change in ("inserted", "deleted", "changed")
    }
    assert found == expected, sorted(expected ^ found)


async def test_upgrading_twice_changes_nothing(ctx: AppContext) -> None:
    before = await ctx.db.current_revision()
    await ctx.db.upgrade()
    assert await ctx.db.current_revision() == before


async def test_processes_starting_together_on_postgres_migrate_once(
    postgres_url: str,
) -> None:
    """Several servers started at once against a new PostgreSQL database all come up."""
    import asyncio
    import uuid

    import asyncpg

    from docuhooks.store.database import Database

    name = f"docuhooks_race_{uuid.uuid4().hex[:10]}"
    base = postgres_url.rsplit("/", 1)[0]
    admin = await asyncpg.connect(postgres_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    databases = [Database.from_url(f"{base}/{name}") for _ in range(4)]
    try:
        await asyncio.gather(*(db.upgrade() for db in databases))
        heads = ScriptDirectory.from_config(alembic_config()).get_heads()
        assert [await db.current_revision() for db in databases] == [heads[0]] * 4
    finally:
        for db in databases:
            await db.dispose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_deliveries_pages_keep_room_for_the_claims_update_on_postgres(
    ctx: AppContext,
) -> None:
    """A claim changes only unindexed lease columns: with room on the page it is a HOT
    update, which adds no index entry where the next claim starts reading."""
    async with ctx.db.read() as conn:
        options = (
            await conn.execute(
                sa.text("SELECT reloptions FROM pg_class WHERE relname = 'deliveries'")
            )
        ).scalar_one()
    assert options == [
        "fillfactor=70",
        "autovacuum_vacuum_scale_factor=0.02",
        "autovacuum_analyze_scale_factor=0.02",
    ]
    async with ctx.db.read() as conn:
        attempts = (
            await conn.execute(
                sa.text("SELECT reloptions FROM pg_class WHERE relname = 'attempts'")
            )
        ).scalar_one()
    # Both tables grow with traffic: vacuumed and analyzed in small rounds (migration 0016).
    assert "autovacuum_vacuum_scale_factor=0.02" in attempts
    # Which holds only while no index covers the lease.
    from docuhooks.store.schema import deliveries

    indexed = {column.name for index in deliveries.indexes for column in index.columns}
    assert not indexed & {"lease_owner", "lease_expires_at"}


#: 300 labels of "é": 599 characters as written, 2,399 with IDNA applied.
LONG_HOST = ".".join(["é"] * 300)


def _upgrade_to(connection: sa.Connection, revision: str) -> None:
    from alembic import command

    command.upgrade(alembic_config(connection), revision)


@asynccontextmanager
async def _new_database(db_url: str) -> AsyncIterator[str]:
    """An empty database of `db_url`'s kind (the shared PostgreSQL one is migrated already)."""
    if not db_url.startswith("postgresql"):
        yield db_url
        return
    import asyncpg

    name = f"docuhooks_migrate_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(db_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield db_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_destination_states_move_to_their_sites_and_hosts_are_read_as_the_client_does(
    db_url: str,
) -> None:
    """Migration 0026: a destination's one state becomes a copy for each site with webhooks
    there, and a host spelled another way (full-width digits) is keyed as the HTTP client
    connects to it."""
    async with _new_database(db_url) as url:
        await _migrate_destination_states(url)


async def _migrate_destination_states(url: str) -> None:
    from datetime import UTC, datetime

    from docuhooks.core.destinations import state_key
    from docuhooks.store.database import Database
    from docuhooks.store.schema import destinations, sites, webhooks

    db = Database.from_url(url)
    now = datetime(2026, 12, 7, tzinfo=UTC)
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(_upgrade_to, "0025")
            for site in ("s1", "s2", "s3", "s4"):
                await conn.execute(
                    sites.insert().values(id=site, name=site, base_url="https://x", created_at=now)
                )
            for hook, site, url, destination in (
                ("h1", "s1", "https://shared.example/a", "https://shared.example:443"),
                ("h2", "s2", "https://shared.example/b", "https://shared.example:443"),
                ("h3", "s3", "http://１２７.0.0.1:8080/c", "http://１２７.0.0.1:8080"),
                # Written another way before: its state moves under the new spelling, where
                # the same site's other webhook's open breaker wins over its closed one.
                ("h4", "s4", "https://Shared.Example./d", "https://shared.example.:443"),
                ("h6", "s4", "https://shared.example/f", "https://shared.example:443"),
                # A host longer than DNS resolves (no longer accepted), with IDNA applied
                # longer still than the column: a key of bounded length.
                ("h5", "s4", f"https://{LONG_HOST}/e", f"https://{LONG_HOST}:443"),
            ):
                await conn.execute(
                    webhooks.insert().values(
                        id=hook,
                        site_id=site,
                        name=hook,
                        url=url,
                        event_type="NewWorkItemVersionComplete",
                        auth_method="HMAC",
                        request_verb="POST",
                        active=True,
                        accept_untrusted_ssl=False,
                        work_group_ids=[],
                        template_ids=[],
                        sort_order=0,
                        timeout_seconds=15,
                        ordered_delivery=False,
                        destination=destination,
                        created_at=now,
                        modified_at=now,
                    )
                )
            for origin, state in (
                ("https://shared.example.:443", "closed"),
                ("https://shared.example:443", "open"),
            ):
                await conn.execute(
                    destinations.insert().values(
                        origin=origin,
                        state=state,
                        failures=5,
                        concurrency=1,
                        next_probe_at=now,
                        updated_at=now,
                    )
                )
            await conn.run_sync(_upgrade_to, "head")
            rows = await conn.execute(sa.select(destinations.c.origin, destinations.c.state))
            assert dict(rows.all()) == {
                state_key("s1", "https://shared.example:443"): "open",
                state_key("s2", "https://shared.example:443"): "open",
                state_key("s4", "https://shared.example:443"): "open",
            }
            hosts = dict(
                (await conn.execute(sa.select(webhooks.c.id, webhooks.c.destination))).all()
            )
            assert hosts["h3"] == "http://127.0.0.1:8080"
            assert hosts["h4"] == "https://shared.example:443"
            assert hosts["h5"].endswith(".invalid:443") and len(hosts["h5"]) < 100
    finally:
        await db.dispose()


async def test_templates_already_stored_get_their_count_of_variables(db_url: str) -> None:
    """Migration 0031: the count lists show is filled in from each stored definition."""
    from datetime import UTC, datetime

    from docuhooks.store.database import Database
    from docuhooks.store.schema import sites, templates

    async with _new_database(db_url) as url:
        db = Database.from_url(url)
        now = datetime(2026, 12, 8, tzinfo=UTC)
        try:
            async with db.engine.begin() as conn:
                await conn.run_sync(_upgrade_to, "0030")
                await conn.execute(
                    sites.insert().values(id="s1", name="s1", base_url="https://x", created_at=now)
                )
                for name, count in (("none", 0), ("one", 1), ("many", 1200)):
                    await conn.execute(
                        templates.insert().values(
                            id=name,
                            site_id="s1",
                            name=name,
                            file_name=f"{name}.docx",
                            content=b"docx",
                            sha256="0" * 64,
                            variables=[{"name": f"V{i}", "type": "text"} for i in range(count)],
                            event_elements=[],
                            created_at=now,
                        )
                    )
                await conn.run_sync(_upgrade_to, "head")
                rows = await conn.execute(sa.select(templates.c.id, templates.c.variable_count))
                assert dict(rows.all()) == {"none": 0, "one": 1, "many": 1200}
        finally:
            await db.dispose()


async def test_answer_sets_already_stored_get_their_size(db_url: str) -> None:
    """Migration 0032: the size the storage quota counts is filled in from each stored
    answer set, in bytes (the answers hold letters of two bytes)."""
    from datetime import UTC, datetime

    from docuhooks.store.database import Database
    from docuhooks.store.schema import (
        interviews,
        sites,
        templates,
        work_groups,
        work_item_versions,
        work_items,
    )

    answers = {"answers": [{"name": "Client Name", "type": "text", "value": "é" * 1000}]}
    empty: dict[str, list[object]] = {"answers": []}
    async with _new_database(db_url) as url:
        db = Database.from_url(url)
        now = datetime(2026, 12, 9, tzinfo=UTC)
        try:
            async with db.engine.begin() as conn:
                await conn.run_sync(_upgrade_to, "0031")
                for table, values in (
                    (sites, {"id": "s1", "name": "s1", "base_url": "https://x"}),
                    (work_groups, {"id": "g1", "site_id": "s1", "name": "g"}),
                    (
                        templates,
                        {
                            "id": "t1",
                            "site_id": "s1",
                            "name": "t",
                            "file_name": "t.docx",
                            "content": b"docx",
                            "sha256": "0" * 64,
                            "variables": [],
                            "event_elements": [],
                        },
                    ),
                    (
                        work_items,
                        {
                            "id": "w1",
                            "site_id": "s1",
                            "work_group_id": "g1",
                            "template_id": "t1",
                            "name": "w",
                        },
                    ),
                ):
                    await conn.execute(table.insert().values(**values, created_at=now))
                for number, stored in ((1, answers), (2, empty)):
                    await conn.execute(
                        work_item_versions.insert().values(
                            id=f"v{number}",
                            work_item_id="w1",
                            site_id="s1",
                            version_number=number,
                            status="InProgress",
                            answers=stored,
                            created_at=now,
                        )
                    )
                    await conn.execute(
                        interviews.insert().values(
                            id=f"i{number}",
                            site_id="s1",
                            work_item_id="w1",
                            version_id=f"v{number}",
                            answers=stored,
                            status="open",
                            created_at=now,
                        )
                    )
                await conn.run_sync(_upgrade_to, "head")
                sizes = {}
                for table in (work_item_versions, interviews):
                    rows = await conn.execute(sa.select(table.c.id, table.c.answers_size))
                    sizes.update(dict(rows.all()))
        finally:
            await db.dispose()
    big = len(json.dumps(answers, separators=(",", ":"), ensure_ascii=False).encode())
    assert big > 2000
    small = len(b'{"answers":[]}')
    assert sizes == {"v1": big, "i1": big, "v2": small, "i2": small}


async def test_test_sends_of_the_last_minute_are_counted_on_as_manual_sends(db_url: str) -> None:
    """Migration 0033: the test sends already counted move to `manual_sends`, of their kind,
    so no site gets a fresh minute of them from the upgrade."""
    from datetime import UTC, datetime

    from docuhooks.store.database import Database
    from docuhooks.store.schema import manual_sends, sites

    async with _new_database(db_url) as url:
        db = Database.from_url(url)
        now = datetime(2026, 12, 9, tzinfo=UTC)
        try:
            async with db.engine.begin() as conn:
                await conn.run_sync(_upgrade_to, "0032")
                await conn.execute(
                    sites.insert().values(id="s1", name="s1", base_url="https://x", created_at=now)
                )
                await conn.execute(
                    sa.text("INSERT INTO test_sends (site_id, sent_at) VALUES ('s1', :at)"),
                    {"at": now},
                )
                await conn.run_sync(_upgrade_to, "head")
                rows = await conn.execute(
                    sa.select(manual_sends.c.site_id, manual_sends.c.kind, manual_sends.c.sent_at)
                )
                assert rows.all() == [("s1", "test", now)]
        finally:
            await db.dispose()


def _downgrade_to(connection: sa.Connection, revision: str) -> None:
    from alembic import command

    command.downgrade(alembic_config(connection), revision)


async def test_running_totals_start_from_what_each_site_keeps(db_url: str) -> None:
    """Migration 0035: each site's running totals start from what it keeps (documents,
    templates, answer sets), its triggers count from there, and a downgrade takes them
    away (writes go on without them) for an upgrade to make them again."""
    from datetime import UTC, datetime

    from docuhooks.platform import storage
    from docuhooks.store.database import Database
    from docuhooks.store.schema import (
        documents,
        interviews,
        sites,
        storage_usage,
        templates,
        work_groups,
        work_item_versions,
        work_items,
    )

    now = datetime(2026, 12, 10, tzinfo=UTC)

    def document(number: int, site: str, size: int) -> dict[str, Any]:
        return {
            "id": f"d{number}-{site}",
            "version_id": f"v-{site}",
            "site_id": site,
            "name": "letter",
            "file_name": "letter.pdf",
            "content_type": "application/pdf",
            "size": size,
            "sha256": "0" * 64,
            "content": b"x" * size,
            "assembled_order": number,
            "created_at": now,
        }

    async def counted(conn: Any, site: str) -> tuple[storage.Usage, storage.Usage]:
        return await storage.usage(conn, site), await storage.recount(conn, site)

    async with _new_database(db_url) as url:
        db = Database.from_url(url)
        try:
            async with db.engine.begin() as conn:
                await conn.run_sync(_upgrade_to, "0034")
                for site, kept in (("s1", 3), ("s2", 1), ("s3", 0)):
                    await conn.execute(
                        sites.insert().values(
                            id=site, name=site, base_url="https://x", created_at=now
                        )
                    )
                    if not kept:
                        continue  # a site that keeps nothing
                    for table, values in (
                        (work_groups, {"id": f"g-{site}", "name": "g"}),
                        (
                            templates,
                            {
                                "id": f"t-{site}",
                                "name": "t",
                                "file_name": "t.docx",
                                "content": b"docx" * 100 * kept,
                                "sha256": "0" * 64,
                                "variables": [],
                                "event_elements": [],
                            },
                        ),
                        (
                            work_items,
                            {
                                "id": f"w-{site}",
                                "work_group_id": f"g-{site}",
                                "template_id": f"t-{site}",
                                "name": "w",
                            },
                        ),
                        (
                            work_item_versions,
                            {
                                "id": f"v-{site}",
                                "work_item_id": f"w-{site}",
                                "version_number": 1,
                                "status": "InProgress",
                                "answers": {"answers": []},
                                "answers_size": 14,
                            },
                        ),
                        (
                            interviews,
                            {
                                "id": f"i-{site}",
                                "work_item_id": f"w-{site}",
                                "version_id": f"v-{site}",
                                "answers": {"answers": []},
                                "answers_size": 14,
                                "status": "open",
                            },
                        ),
                    ):
                        await conn.execute(
                            table.insert().values(**values, site_id=site, created_at=now)
                        )
                    for number in range(kept):
                        await conn.execute(
                            documents.insert().values(**document(number, site, 1000 * kept))
                        )
                await conn.run_sync(_upgrade_to, "head")
                for site in ("s1", "s2", "s3"):
                    totals, recounted = await counted(conn, site)
                    assert totals == recounted, site
                assert totals == storage.Usage(0, 0)
                assert await counted(conn, "s1") == (storage.Usage(3 * 3000 + 1200 + 28, 4),) * 2
                # Counted from here on by the triggers.
                await conn.execute(documents.insert().values(**document(7, "s2", 50)))
                totals, recounted = await counted(conn, "s2")
                assert totals == recounted == storage.Usage(1000 + 50 + 400 + 28, 3)

                await conn.run_sync(_downgrade_to, "0034")
                assert "storage_usage" not in await conn.run_sync(
                    lambda sync: sa.inspect(sync).get_table_names()
                )
                await conn.execute(documents.delete().where(documents.c.id == "d7-s2"))
                await conn.run_sync(_upgrade_to, "head")
                for site in ("s1", "s2", "s3"):
                    totals, recounted = await counted(conn, site)
                    assert totals == recounted, site
                rows = await conn.execute(
                    sa.select(storage_usage.c.site_id, sa.func.count()).group_by(
                        storage_usage.c.site_id
                    )
                )
                assert dict(rows.all()) == {"s1": 1, "s2": 1}
        finally:
            await db.dispose()
