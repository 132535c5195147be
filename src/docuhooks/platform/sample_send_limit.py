"""The limit on a site's test sends: `webhook_tests_per_minute` within any minute.

A test send (`POST /webhooks/{id}/test`, the web UI's *Send test*) makes a call, or queues a
delivery that is retried like any other, to whatever URL the site's webhook names. Without
a limit a site could aim them at anyone's server as fast as it can ask. The limit is per
site, whatever its number of webhooks, as a per-webhook one would grow with them.

Each test send is a row in `test_sends`, kept for the window, as wrong passwords are kept
for the sign-in throttle (`identity.throttle`): every process on the database counts the
same rows, so N API processes behind a load balancer do not give a site N times the sends.
The count and the row that takes a turn are one transaction under the site's lock
(`store.scoped.lock_site`), so sends racing each other are counted one after the other, in
one process or many, and never more than the limit get through.

Past the limit the send is refused with a 429 and `Retry-After` (when the oldest send in the
window leaves it), what GitHub, Stripe and every other rate-limited API answer: a client that
knows 429 waits and tries again.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import sqlalchemy as sa

from docuhooks.errors import TooManyRequests
from docuhooks.store.database import Database
from docuhooks.store.schema import test_sends
from docuhooks.store.scoped import lock_site

WINDOW = timedelta(minutes=1)


async def take_turn(db: Database, site_id: str, *, per_minute: int, now: datetime) -> None:
    """Count a test send of `site_id`'s at `now`, or refuse it (`TooManyRequests`) when the
    site has made `per_minute` within the minute before; 0 means no limit. Its own
    transaction, committed before the send goes: a send that then fails has used its turn."""
    if per_minute <= 0:
        return
    async with db.transaction() as conn:
        await lock_site(conn, site_id)
        of_site = test_sends.c.site_id == site_id
        await conn.execute(test_sends.delete().where(of_site, test_sends.c.sent_at <= now - WINDOW))
        latest = (
            await conn.execute(
                sa.select(test_sends.c.sent_at)
                .where(of_site, test_sends.c.sent_at > now - WINDOW)
                .order_by(test_sends.c.sent_at.desc())
                .limit(per_minute)
            )
        ).scalars()
        times = list(latest)
        if len(times) >= per_minute:
            wait = (times[-1] + WINDOW - now).total_seconds()
            seconds = max(1, math.ceil(wait))
            raise TooManyRequests(
                f"too many test sends: a site may send {per_minute} a minute "
                f"(webhook_tests_per_minute); try again in {seconds} second(s)",
                retry_after=wait,
            )
        await conn.execute(test_sends.insert().values(site_id=site_id, sent_at=now))
