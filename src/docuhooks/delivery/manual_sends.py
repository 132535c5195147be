"""The limits on what a site's administrators send by hand, each a number within any minute:

* **test sends** (`POST /webhooks/{id}/test`, the web UI's *Send test*), and redeliveries of
  test deliveries, which are test sends too: `webhook_tests_per_minute`;
* **redeliveries** of real deliveries (`POST /deliveries/{id}/redeliver`, the web UI's
  *Redeliver event*): `redeliveries_per_minute`.

Each makes a call, or queues a delivery that is retried like any other, to whatever URL the
site's webhook names: without a limit a site could aim them at anyone's server as fast as it
can ask, and every redelivery of a finished delivery is a new row in the delivery log. The
limits are per site, whatever its number of webhooks, as a per-webhook one would grow with
them. Recovering a webhook's failures in bulk is a background job, one at a time per webhook
(`delivery.recovery`), not a manual send.

Each send is a row in `manual_sends`, of its kind, kept for the window, as wrong passwords
are kept for the sign-in throttle (`identity.throttle`): every process on the database counts
the same rows, so N API processes behind a load balancer do not give a site N times the
sends. The count and the row that takes a turn are written under the site's lock
(`store.scoped.lock_site`) in the caller's transaction, so sends racing each other are
counted one after the other, in one process or many, and never more than the limit get
through.

Past the limit the send is refused with a 429 and `Retry-After` (when the oldest send of the
kind in the window leaves it), what GitHub, Stripe and every other rate-limited API answer: a
client that knows 429 waits and tries again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks.errors import TooManyRequests
from docuhooks.store.schema import manual_sends
from docuhooks.store.scoped import lock_site

__all__ = ["REDELIVERIES", "TEST_SENDS", "WINDOW", "SendLimit", "take_turn"]

WINDOW = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class SendLimit:
    """One kind of manual send, and how its refusal names it."""

    #: The kind its rows have in `manual_sends`.
    kind: str
    #: The setting that holds the number a minute.
    setting: str
    #: What the refusal calls the sends ("too many test sends") and doing one ("may send").
    sends: str
    verb: str
    #: Said after the wait, when there is a better way to do many: `{webhook_id}` is the
    #: webhook sent to, so the way is named with its real path.
    instead: str = ""

    def refusal(self, *, webhook_id: str, per_minute: int, seconds: int) -> str:
        """The 429's message: the limit, its setting, the wait, and what to do instead."""
        return (
            f"too many {self.sends}: a site may {self.verb} {per_minute} a minute "
            f"({self.setting}); try again in {seconds} second(s)"
            f"{self.instead.format(webhook_id=webhook_id)}"
        )


#: No `instead`: a test send checks a receiver, and nothing sends many tests at once.
TEST_SENDS = SendLimit("test", "webhook_tests_per_minute", "test sends", "send")
REDELIVERIES = SendLimit(
    "redelivery",
    "redeliveries_per_minute",
    "redeliveries",
    "redeliver",
    instead=", or re-send this webhook's failed deliveries all at once with "
    "POST /api/v1/webhooks/{webhook_id}/recover",
)


async def take_turn(
    conn: AsyncConnection,
    limit: SendLimit,
    site_id: str,
    *,
    webhook_id: str,
    per_minute: int,
    now: datetime,
) -> None:
    """Count a send of `limit`'s kind by `site_id` at `now` in the caller's transaction, or
    refuse it (`TooManyRequests`) when the site has made `per_minute` of them within the
    minute before; 0 means no limit. `webhook_id` is the webhook the send goes to, named in
    the refusal's way to do many instead. Takes the site's lock (held to the transaction's
    end): the turn is used once the transaction commits, and not if it rolls back."""
    if per_minute <= 0:
        return
    await lock_site(conn, site_id)
    of_site = manual_sends.c.site_id == site_id
    await conn.execute(manual_sends.delete().where(of_site, manual_sends.c.sent_at <= now - WINDOW))
    of_kind = manual_sends.c.kind == limit.kind
    latest = (
        await conn.execute(
            sa.select(manual_sends.c.sent_at)
            .where(of_site, of_kind, manual_sends.c.sent_at > now - WINDOW)
            .order_by(manual_sends.c.sent_at.desc())
            .limit(per_minute)
        )
    ).scalars()
    times = list(latest)
    if len(times) >= per_minute:
        wait = (times[-1] + WINDOW - now).total_seconds()
        seconds = max(1, math.ceil(wait))
        raise TooManyRequests(
            limit.refusal(webhook_id=webhook_id, per_minute=per_minute, seconds=seconds),
            retry_after=wait,
        )
    await conn.execute(manual_sends.insert().values(site_id=site_id, kind=limit.kind, sent_at=now))
