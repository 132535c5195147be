"""Every process of an installation uses the one key its secrets are encrypted with: the
first records a check of its key, a process given another stops at start."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from tests.delivery.delivery_support import make_webhook
from tests.support import SiteUsers

from docuhooks.context import AppContext
from docuhooks.identity.installation_key import KeyMismatch, check_installation_key
from docuhooks.identity.secrets import SecretBox
from docuhooks.store.schema import installation

OTHER_KEY = SecretBox("another-key-of-another-server")


async def test_the_first_process_records_its_key_and_another_key_is_refused(
    ctx: AppContext,
) -> None:
    await check_installation_key(ctx.db, ctx.box, now=ctx.now())
    await check_installation_key(ctx.db, ctx.box, now=ctx.now())  # again, as every later start does
    async with ctx.db.read() as conn:
        (row,) = (await conn.execute(sa.select(installation))).all()
    assert row.key_check == ctx.box.key_check
    assert SecretBox(ctx.settings.secret_key).key_check == ctx.box.key_check
    assert OTHER_KEY.key_check != ctx.box.key_check
    with pytest.raises(KeyMismatch, match="not the one this installation's secrets"):
        await check_installation_key(ctx.db, OTHER_KEY, now=ctx.now())


async def test_an_installation_from_before_the_check_proves_the_key_on_its_secrets(
    ctx: AppContext, site: SiteUsers
) -> None:
    """Secrets stored, no check recorded yet (an installation upgraded to this version): a
    first process with another key is refused and records nothing, so the right one can."""
    await make_webhook(ctx, site, "https://receiver.example/hook")
    async with ctx.db.transaction() as conn:
        await conn.execute(installation.delete())
    with pytest.raises(KeyMismatch, match="cannot decrypt the webhook secrets"):
        await check_installation_key(ctx.db, OTHER_KEY, now=ctx.now())
    async with ctx.db.read() as conn:
        assert (await conn.execute(sa.select(installation))).all() == []
    await check_installation_key(ctx.db, ctx.box, now=ctx.now())
    with pytest.raises(KeyMismatch):
        await check_installation_key(ctx.db, OTHER_KEY, now=ctx.now())


def test_the_check_does_not_tell_the_key() -> None:
    box = SecretBox("a-key-of-twenty-characters")
    assert "a-key-of" not in box.key_check
    assert len(box.key_check) == 64
