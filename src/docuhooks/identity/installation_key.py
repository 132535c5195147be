"""Every process of an installation uses the one secret key its stored secrets are
encrypted with.

The key is `DOCUHOOKS_SECRET_KEY`, or the one generated into the data directory on first
start. On PostgreSQL each process has its own settings and data directory, so two can
disagree: an API server started elsewhere generates a key of its own and stores secrets
that no other process can read; a worker given a mistyped key fails every call it signs.
The installation keeps a check of its key (`store.schema.installation`, an HMAC of a fixed
text, which does not reveal the key): the first process to start writes it, and a process
whose key does not match stops at start with `KeyMismatch`, before it stores or sends
anything.

An installation from before the check holds secrets but no check yet: its first process
proves its key on one stored secret before writing the check, so the first process after
the upgrade cannot write the wrong key's check either.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from docuhooks.errors import DocuhooksError
from docuhooks.identity.secrets import SecretBox
from docuhooks.store.database import Database
from docuhooks.store.schema import installation, webhooks

__all__ = ["KeyMismatch", "check_installation_key"]

_ADVICE = (
    "Give every process of an installation the same key: set DOCUHOOKS_SECRET_KEY (or copy "
    "secret.key from the data directory of the first server) on this one."
)


class KeyMismatch(DocuhooksError):
    """This process's secret key is not the installation's."""

    code = "secret_key_mismatch"


async def check_installation_key(db: Database, box: SecretBox, *, now: datetime) -> None:
    """Stop (`KeyMismatch`) unless `box`'s key is the installation's; the first process of
    an installation records its key's check (at `now`)."""
    async with db.read() as conn:
        recorded = (await conn.execute(sa.select(installation.c.key_check))).scalar()
    if recorded is None:
        await _record(db, box, now)
        async with db.read() as conn:
            recorded = (await conn.execute(sa.select(installation.c.key_check))).scalar()
    if recorded != box.key_check:
        raise KeyMismatch(
            "this process's secret key is not the one this installation's secrets are "
            f"encrypted with (another process started with a different key). {_ADVICE}"
        )


async def _record(db: Database, box: SecretBox, now: datetime) -> None:
    async with db.transaction() as conn:
        stored = (
            await conn.execute(
                sa.select(
                    sa.func.coalesce(
                        webhooks.c.secret_enc,
                        webhooks.c.access_token_enc,
                        webhooks.c.previous_secret_enc,
                    )
                )
                .where(
                    sa.or_(
                        webhooks.c.secret_enc.is_not(None),
                        webhooks.c.access_token_enc.is_not(None),
                        webhooks.c.previous_secret_enc.is_not(None),
                    )
                )
                .limit(1)
            )
        ).scalar()
        if stored is not None and not box.can_decrypt(stored):
            raise KeyMismatch(
                "this process's secret key cannot decrypt the webhook secrets this "
                f"installation already holds. {_ADVICE}"
            )
        # Of two processes starting at once, one writes the check; the other reads it.
        insert = (
            postgresql.insert(installation)
            if conn.dialect.name == "postgresql"
            else sqlite.insert(installation)
        )
        await conn.execute(
            insert.values(id=1, key_check=box.key_check, created_at=now).on_conflict_do_nothing(
                index_elements=[installation.c.id]
            )
        )
