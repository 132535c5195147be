"""Sign-in throttling: after repeated wrong passwords for one login name, or from one client
address, further attempts are refused for a while, so a password cannot be guessed at the
speed of the server.

Wrong passwords are kept in the database (`sign_in_failures`), so every process serving the
same database counts them together: N API processes behind a load balancer do not give a
guesser N times the attempts. Each wrong password writes a row per key in a transaction of
its own, so it counts even though the sign-in that failed changes nothing else; rows older
than the window are deleted as new ones come. A sign-in reads the counts first, without the
write lock, and a right password writes only when its account has failures to clear.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta
from typing import TypeVar

import sqlalchemy as sa

from docuhooks.core.clock import Clock, SystemClock
from docuhooks.errors import TooManyRequests
from docuhooks.store.database import Database
from docuhooks.store.schema import sign_in_failures

T = TypeVar("T")

#: Wrong passwords tolerated per key within the window.
MAX_FAILURES = 10
WINDOW_SECONDS = 15 * 60


class LoginThrottle:
    """The policy (how many wrong passwords, over how long) over the shared failure rows."""

    def __init__(
        self,
        *,
        max_failures: int = MAX_FAILURES,
        window_seconds: float = WINDOW_SECONDS,
        clock: Clock | None = None,
    ) -> None:
        self.max_failures = max_failures
        self.window = timedelta(seconds=window_seconds)
        self._clock: Clock = clock or SystemClock()

    async def retry_after(self, db: Database, keys: Iterable[str]) -> float | None:
        """Seconds until every one of `keys` may try again, or None when none is throttled.

        A key is throttled while `max_failures` of its failures lie within the window: it
        may try again once the oldest of its latest `max_failures` has left it.
        """
        now = self._clock.now()
        waits = []
        async with db.read() as conn:
            for key in keys:
                latest = (
                    await conn.execute(
                        sa.select(sign_in_failures.c.failed_at)
                        .where(
                            sign_in_failures.c.key == key,
                            sign_in_failures.c.failed_at > now - self.window,
                        )
                        .order_by(sign_in_failures.c.failed_at.desc())
                        .limit(self.max_failures)
                    )
                ).scalars()
                times = list(latest)
                if len(times) >= self.max_failures:
                    waits.append((times[-1] + self.window - now).total_seconds())
        return max(waits) if waits else None

    async def failed(self, db: Database, keys: Iterable[str]) -> None:
        """Count a wrong password against each of `keys`. Call it outside any transaction
        of the caller's: it commits on its own, whatever becomes of the caller's work."""
        now = self._clock.now()
        rows = [{"key": key, "failed_at": now} for key in keys]
        async with db.transaction() as conn:
            await conn.execute(
                sign_in_failures.delete().where(sign_in_failures.c.failed_at <= now - self.window)
            )
            if rows:
                await conn.execute(sign_in_failures.insert(), rows)

    async def succeeded(self, db: Database, login_key: str) -> None:
        """A right password clears its account's count (not its address's: one good account
        must not reset the count of guesses at others from the same place). Most sign-ins
        follow no wrong password: they read, and write nothing."""
        of_login = sign_in_failures.c.key == login_key
        async with db.read() as conn:
            counted = await conn.scalar(sa.select(sa.literal(1)).where(of_login).limit(1))
        if counted is None:
            return
        async with db.transaction() as conn:
            await conn.execute(sign_in_failures.delete().where(of_login))


def login_keys(login_name: str, client: str | None, *, also: Iterable[str] = ()) -> list[str]:
    """Throttle by the account tried (and the other accounts `also` named, when a name may
    mean more than one) and by where the attempts come from."""
    keys = [f"login:{login_name.strip().lower()}"[:400]]
    keys += [f"login:{name.strip().lower()}"[:400] for name in also]
    if client:
        keys.append(f"client:{client}"[:400])
    return keys


async def guarded(
    throttle: LoginThrottle,
    db: Database,
    login_name: str,
    client: str | None,
    attempt: Callable[[], Awaitable[T | None]],
    *,
    also: Iterable[str] = (),
) -> T | None:
    """Run a sign-in `attempt` unless its account or address is throttled (TooManyRequests),
    and count its outcome; a wrong password counts against the accounts `also` names too.
    Call it outside any write transaction: on SQLite the count's own transaction would wait
    for that one forever."""
    keys = login_keys(login_name, client, also=also)
    wait = await throttle.retry_after(db, keys)
    if wait is not None:
        minutes = max(1, math.ceil(wait / 60))
        raise TooManyRequests(
            f"too many wrong passwords for this account or from this address; try again in "
            f"{minutes} minute(s)",
            retry_after=wait,
        )
    result = await attempt()
    if result is None:
        await throttle.failed(db, keys)
    else:
        await throttle.succeeded(db, keys[0])
    return result
