"""Where a delivery's latency goes: commit → claim starts → claim ends → send → receipt.

Events are committed at a steady rate (`--rate`, one per transaction, as the API writes
them) while an in-process worker delivers them to a receiver in its own process; each
event's moments are taken from the worker's own claim and attempt, and the receiver's clock.
It prints the median of each stage and the claims' count, median length and mean size, for
each store given. What `bench/delivery.py` reports as half-load latency is the sum.

    python bench/latency_stages.py --rate 400 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import delivery as bench

from docuhooks.delivery.queries import Job
from docuhooks.delivery.worker import Worker

STAGES = (("commit", "claim0"), ("claim0", "claim1"), ("claim1", "send"), ("send", "recv"))


class _Traced(Worker):
    """A worker that notes when each event's claim started and ended and its send began."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.marks: dict[str, dict[str, float]] = {}
        self.claims: list[tuple[float, int]] = []

    async def _claim_untraced(self, limit: int) -> list[Job]:
        started = time.time()
        jobs = await super()._claim_untraced(limit)
        ended = time.time()
        self.claims.append((ended - started, len(jobs)))
        for job in jobs:
            self.marks.setdefault(job.event.event_id, {}).update(claim0=started, claim1=ended)
        return jobs

    async def _attempt(self, job: Job) -> Any:
        self.marks.setdefault(job.event.event_id, {})["send"] = time.time()
        return await super()._attempt(job)


async def run(kind: str, receiver: bench.Receiver, rate: float, seconds: float) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        async with bench.store(kind, Path(tmp)) as url:
            ctx = await bench._context(bench._settings(url, Path(tmp) / kind, 64))
            try:
                site_id, _, _ = await bench._webhook(ctx, receiver.url)
                worker = _Traced(ctx)
                await worker.start()
                await receiver.reset(track=True)

                async def produce(i: int) -> tuple[str, float]:
                    event_id, moment = await bench.commit_event(ctx, site_id, i)
                    worker.marks.setdefault(event_id, {})["commit"] = moment
                    return event_id, moment

                sent = await bench._paced(rate, seconds, produce)
                await receiver.wait_for(len(sent), timeout=120)
                _, arrived = await receiver.arrivals()
                await worker.stop()
            finally:
                await ctx.close()
    for event_id, moment in arrived.items():
        worker.marks.get(event_id, {})["recv"] = moment

    def median_ms(first: str, last: str) -> float:
        marks = [worker.marks[key] for key in sent]
        return statistics.median(1000 * (m[last] - m[first]) for m in marks if last in m)

    cells = [f"{median_ms(first, last):9.2f}" for first, last in STAGES]
    lengths = [1000 * length for length, _ in worker.claims]
    sizes = [size for _, size in worker.claims]
    return (
        f"{kind:<12}{''.join(cells)}{median_ms('commit', 'recv'):9.2f}"
        f"{len(worker.claims):9d}{statistics.median(lengths):9.2f}{statistics.mean(sizes):9.1f}"
    )


async def main(args: argparse.Namespace) -> None:
    bench._quiet_logs()
    receiver = bench.Receiver()
    await receiver.start()
    try:
        print(f"{args.rate:g} events/s for {args.seconds:g} s; medians in ms\n")
        print(
            f"{'store':<12}{'→claim':>9}{'claim':>9}{'→send':>9}{'send':>9}{'total':>9}"
            f"{'claims':>9}{'claim ms':>9}{'size':>9}"
        )
        for kind in args.stores:
            print(await run(kind, receiver, args.rate, args.seconds))
    finally:
        receiver.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=400.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument(
        "--stores", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite", "postgresql"]
    )
    asyncio.run(main(parser.parse_args()))
