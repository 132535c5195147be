"""Schemathesis over /openapi.json against the real server on a real socket, authenticated,
on both stores: no input it can think of may produce a 5xx or a response that breaks the
documented schema."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
)
from tests.support import LiveServer, SiteUsers, make_site

from docuhooks.context import AppContext
from docuhooks.identity.secrets import SecretBox
from docuhooks.settings import Settings
from docuhooks.store.database import Database

#: Examples per operation: enough to reach odd corners, few enough for a 2-core CI.
EXAMPLES = 40


def _context(settings: Settings) -> AppContext:
    return AppContext(
        settings=settings,
        db=Database.from_url(settings.resolved_database_url),
        box=SecretBox(settings.secret_key),
    )


@pytest.fixture
def live(settings: Settings) -> Iterator[tuple[LiveServer, SiteUsers]]:
    async def bootstrap() -> SiteUsers:
        ctx = _context(settings)
        await ctx.db.upgrade()
        try:
            return await make_site(ctx)
        finally:
            await ctx.db.dispose()

    site = asyncio.run(bootstrap())
    with LiveServer(_context(settings)) as server:
        yield server, site


def test_api_never_fails_and_matches_its_schema(live: tuple[LiveServer, SiteUsers]) -> None:
    server, site = live
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 10, "the schema lost its operations"
    for operation in operations:

        @given(case=operation.as_strategy())
        @hypothesis_settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case: Any) -> None:
            headers = {**(case.headers or {}), **site.auth()}
            response = case.call(base_url=server.url, headers=headers, timeout=30)
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path} -> {response.status_code}: "
                f"{response.text[:300]}"
            )
            case.validate_response(response, checks=[response_schema_conformance])

        try:
            check()
        except Exception as exc:
            failures.append(f"{operation.label}: {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)
