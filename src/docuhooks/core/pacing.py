"""Background batches sized by how long they take, not by a fixed count.

On SQLite every statement runs on the server's event loop, so a background job's batch (a
recovery's redeliveries, a prune's deletes) holds every request and delivery of the process
for as long as its transaction lasts. How long a fixed count of rows takes depends on the
machine, its load and the rows' indexes: 200 rows took 10 ms on one run and 50 ms on another
of the same test. A `Pacer` instead aims each batch at a duration: after each batch it scales
the next one by how far the last one's time per row was from the aim, growing at most twofold
a step (one quick batch on an idle moment does not make the next one huge) and shrinking at
once. On PostgreSQL, where statements wait off the loop, a job keeps a fixed size instead
(`Pacer.fixed`).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Pacer"]


@dataclass
class Pacer:
    """The size of the next batch; `took` tells it how long the last one lasted."""

    size: int
    #: Seconds a batch should last; None keeps `size` whatever batches take.
    aim: float | None = None
    smallest: int = 10
    largest: int = 5000

    @classmethod
    def fixed(cls, size: int) -> Pacer:
        return cls(size=size)

    @classmethod
    def aiming(cls, aim: float, *, start: int, smallest: int = 10, largest: int = 5000) -> Pacer:
        return cls(size=start, aim=aim, smallest=smallest, largest=largest)

    def took(self, rows: int, seconds: float) -> None:
        """The last batch handled `rows` rows in `seconds`: size the next one."""
        if self.aim is None or rows <= 0:
            return
        per_row = max(seconds, 1e-6) / rows
        wanted = int(self.aim / per_row)
        self.size = max(self.smallest, min(self.largest, 2 * self.size, wanted))
