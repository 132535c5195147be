"""`Database.retried`: a transaction PostgreSQL aborted to end a deadlock or a serialization
failure runs again from the start; any other failure is the caller's at once."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks.context import AppContext


class _ServerError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"SQLSTATE {sqlstate}")
        self.sqlstate = sqlstate


def _failure(sqlstate: str) -> sa_exc.DBAPIError:
    return sa_exc.DBAPIError("UPDATE …", None, _ServerError(sqlstate))


@pytest.mark.parametrize("sqlstate", ["40P01", "40001"])
async def test_a_transaction_aborted_by_a_conflict_runs_again(
    ctx: AppContext, sqlstate: str
) -> None:
    runs = 0

    async def work(conn: AsyncConnection) -> int:
        nonlocal runs
        runs += 1
        value = (await conn.execute(sa.text("SELECT 7"))).scalar_one()
        if runs < 3:
            raise _failure(sqlstate)
        return int(value)

    assert await ctx.db.retried(work) == 7
    assert runs == 3


async def test_any_other_failure_is_raised_at_once(ctx: AppContext) -> None:
    runs = 0

    async def work(conn: AsyncConnection) -> None:
        nonlocal runs
        runs += 1
        raise _failure("23505")

    with pytest.raises(sa_exc.DBAPIError):
        await ctx.db.retried(work)
    assert runs == 1


async def test_a_conflict_that_keeps_coming_back_is_raised_after_the_last_attempt(
    ctx: AppContext,
) -> None:
    runs = 0

    async def work(conn: AsyncConnection) -> None:
        nonlocal runs
        runs += 1
        raise _failure("40P01")

    with pytest.raises(sa_exc.DBAPIError):
        await ctx.db.retried(work, attempts=3)
    assert runs == 3
