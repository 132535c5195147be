"""The render pool: each job is held to its time, memory and output limits in a worker
process; a job past a limit, or whose worker dies, fails alone, and the pool goes on."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest
from tests.platform.docx_factory import standard_template
from tests.platform.hostile_docx import LOOPING, OUTPUT_BLOW_UP, RECURSION, document_bomb, template

from docuhooks.answers import Answer, AnswerSet, AnswerType, VariableDef
from docuhooks.errors import LimitExceeded, ValidationFailed
from docuhooks.platform.renderjobs import RenderLimits
from docuhooks.platform.renderpool import FairSlots, RenderPool, worker_pids

MiB = 1024 * 1024
SITE = "site-a"
OTHER = "site-b"
NAME_AND_FEE = (VariableDef("Client Name", AnswerType.TEXT), VariableDef("Fee", AnswerType.NUMBER))


def blow_up_answers(name_length: int = 1000, fee: int = 500_000) -> AnswerSet:
    return AnswerSet(
        [
            Answer("Client Name", AnswerType.TEXT, "n" * name_length),
            Answer("Fee", AnswerType.NUMBER, fee),
        ]
    )


def crash(limits: RenderLimits) -> None:
    """A job whose worker dies under it (run in the worker)."""
    os._exit(7)


def allocate(limits: RenderLimits, size: int) -> int:
    """A job that asks for `size` bytes at once (run in the worker)."""
    return len(bytearray(size))


@pytest.fixture
async def pool() -> AsyncIterator[RenderPool]:
    limits = RenderLimits(time_seconds=3, memory_bytes=768 * MiB, output_bytes=4 * MiB)
    renders = RenderPool(2, limits)
    yield renders
    await renders.close()


async def test_a_template_renders_in_a_worker(pool: RenderPool) -> None:
    info = await pool.inspect(standard_template(), site_id=SITE)
    assert "Client_Name" in info.placeholders
    document = await pool.assemble(standard_template(), AnswerSet(), (), site_id=SITE)
    assert document.startswith(b"PK")


async def test_a_render_past_the_time_limit_is_killed_and_the_pool_serves_the_next(
    pool: RenderPool,
) -> None:
    await pool.start()
    before = set(worker_pids(pool))
    with pytest.raises(LimitExceeded) as refused:
        await pool.assemble(template(LOOPING), AnswerSet(), (), site_id=SITE)
    assert refused.value.code == "render_time_limit"
    assert refused.value.status == 422
    assert "render_time_limit_seconds" in refused.value.message
    assert refused.value.details[0].field == "answers"
    # The looping worker is gone; the next job gets a fresh one.
    assert (await pool.assemble(standard_template(), AnswerSet(), (), site_id=SITE)).startswith(
        b"PK"
    )
    after = set(worker_pids(pool))
    assert len(before - after) == 1


async def test_a_looping_render_does_not_hold_up_the_other_worker(pool: RenderPool) -> None:
    looping = asyncio.create_task(pool.assemble(template(LOOPING), AnswerSet(), (), site_id=SITE))
    # Proven by order: the second job finishes while the first is still running.
    document = await pool.assemble(standard_template(), AnswerSet(), (), site_id=OTHER)
    assert document.startswith(b"PK")
    assert not looping.done()
    with pytest.raises(LimitExceeded):
        await looping


async def test_output_over_the_limit_is_refused_before_it_is_built(pool: RenderPool) -> None:
    with pytest.raises(LimitExceeded) as refused:
        await pool.assemble(template(OUTPUT_BLOW_UP), blow_up_answers(), NAME_AND_FEE, site_id=SITE)
    assert refused.value.code == "render_output_too_large"
    assert refused.value.status == 413
    assert "render_output_limit_bytes" in refused.value.message


async def test_output_counted_as_it_is_produced() -> None:
    # Many small pieces rather than one product: the count of what is produced catches it.
    pool = RenderPool(1, RenderLimits(time_seconds=10, output_bytes=MiB))
    try:
        with pytest.raises(LimitExceeded) as refused:
            await pool.assemble(
                template("{% for i in range(99999) %}{{ Client_Name }}{% endfor %}"),
                blow_up_answers(name_length=100),
                NAME_AND_FEE,
                site_id=SITE,
            )
        assert refused.value.code == "render_output_too_large"
    finally:
        await pool.close()


async def test_memory_past_the_limit_fails_the_job_not_the_pool(pool: RenderPool) -> None:
    with pytest.raises(LimitExceeded) as refused:
        await pool.run(allocate, 2048 * MiB, site_id=SITE)
    assert refused.value.code == "render_memory_limit"
    assert "render_memory_limit_bytes" in refused.value.message
    assert await pool.run(allocate, MiB, site_id=SITE) == MiB


async def test_a_render_that_needs_too_much_memory_is_refused() -> None:
    # The output budget set high, so that only the memory limit stands in the way.
    limits = RenderLimits(time_seconds=30, memory_bytes=512 * MiB, output_bytes=4096 * MiB)
    pool = RenderPool(1, limits)
    try:
        with pytest.raises(LimitExceeded) as refused:
            await pool.assemble(
                template(OUTPUT_BLOW_UP), blow_up_answers(fee=2_000_000), NAME_AND_FEE, site_id=SITE
            )
        assert refused.value.code == "render_memory_limit"
    finally:
        await pool.close()


async def test_a_worker_that_dies_fails_only_its_own_job(pool: RenderPool) -> None:
    with pytest.raises(LimitExceeded) as refused:
        await pool.run(crash, site_id=SITE)
    assert refused.value.code == "render_crashed"
    assert "exit code 7" in refused.value.message
    assert await pool.run(allocate, 10, site_id=SITE) == 10


async def test_template_errors_are_validation_failures_with_the_reason(pool: RenderPool) -> None:
    with pytest.raises(ValidationFailed) as refused:
        await pool.assemble(template(RECURSION), AnswerSet(), (), site_id=SITE)
    assert "calls itself" in refused.value.message
    with pytest.raises(ValidationFailed, match="Range too big"):
        await pool.assemble(template("{{ range(10**8) | list }}"), AnswerSet(), (), site_id=SITE)
    with pytest.raises(ValidationFailed, match="exponents"):
        await pool.assemble(template("{{ 9 ** 99999999 }}"), AnswerSet(), (), site_id=SITE)


async def test_the_reason_a_template_failed_is_cut_short(pool: RenderPool) -> None:
    """A template's own exception can carry what it built: `{}.pop(key)` raises a KeyError
    whose message is the key. Within the output budget that is 64 MiB by default, and with
    `~` more; the whole of it used to cross the pipe and come back in the 422 (twice: the
    detail and the summary), built in the server's own memory, which nothing limits."""
    huge_key = '{{ {}.pop(("k" * 3000000) ~ ("k" * 3000000)) }}'
    with pytest.raises(ValidationFailed) as refused:
        await pool.assemble(template(huge_key), AnswerSet(), (), site_id=SITE)
    message = refused.value.details[0].message
    assert message.startswith("the template could not be rendered: KeyError: 'kkk")
    assert len(message) <= 1000


async def test_a_bomb_is_refused_by_the_docx_limits(pool: RenderPool) -> None:
    with pytest.raises(LimitExceeded) as refused:
        await pool.inspect(document_bomb(40 * MiB), site_id=SITE)
    assert refused.value.code == "docx_too_large_uncompressed"
    assert refused.value.status == 413
    assert refused.value.details[0].field == "file"


async def test_a_closed_pool_answers_unavailable_and_leaves_no_worker(pool: RenderPool) -> None:
    await pool.start()
    pids = worker_pids(pool)
    looping = asyncio.create_task(pool.assemble(template(LOOPING), AnswerSet(), (), site_id=SITE))
    for _ in range(1000):
        if pool.busy:
            break
        await asyncio.sleep(0.01)
    await pool.close()
    with pytest.raises(Exception) as stopped:
        await looping
    assert getattr(stopped.value, "status", None) == 503
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


async def wait_busy(pool: RenderPool, jobs: int) -> None:
    for _ in range(1000):
        if pool.busy >= jobs:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{jobs} jobs never started")


async def test_one_site_looping_renders_do_not_starve_another_site() -> None:
    """Site A queues six looping renders on two workers; site B's render starts on the
    worker A may not take, and completes before A's second render even starts (by the pool's
    own log of job starts)."""
    pool = RenderPool(2, RenderLimits(time_seconds=2, output_bytes=4 * MiB))
    try:
        looping = [
            asyncio.create_task(pool.assemble(template(LOOPING), AnswerSet(), (), site_id=SITE))
            for _ in range(6)
        ]
        await wait_busy(pool, 1)
        document = await pool.assemble(standard_template(), AnswerSet(), (), site_id=OTHER)
        assert document.startswith(b"PK")
        assert [site for site, _ in pool.started] == [SITE, OTHER]
        assert pool.per_site == 1 and pool._slots.waiting == 5
        # A's renders go on, one at a time, each stopped at the time limit.
        with pytest.raises(LimitExceeded):
            await looping[0]
        assert [site for site, _ in pool.started][2] == SITE
        for task in looping[1:]:
            task.cancel()
        await asyncio.gather(*looping, return_exceptions=True)
    finally:
        await pool.close()


async def test_waiting_jobs_are_started_round_robin_across_sites() -> None:
    slots = FairSlots(2, per_site=2)
    started: list[str] = []

    async def job(site: str, release: asyncio.Event) -> None:
        await slots.acquire(site)
        started.append(site)
        await release.wait()
        slots.release(site)

    releases = {name: asyncio.Event() for name in ("a1", "a2", "a3", "a4", "b1", "b2", "c1")}
    tasks = [asyncio.create_task(job(name[0], releases[name])) for name in releases]
    await asyncio.sleep(0)
    # a1 and a2 took both slots; a3, a4, b1, b2, c1 wait, in that order of arrival.
    assert started == ["a", "a"] and slots.waiting == 5
    for name in ("a1", "a2", "b1", "a3", "c1", "b2", "a4"):
        releases[name].set()
        for _ in range(5):
            await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    # Round-robin by site, not first come first served: b and c start before a's fourth job.
    assert started == ["a", "a", "a", "b", "c", "a", "b"]


async def test_a_site_holds_at_most_its_share_and_a_cancelled_wait_gives_way() -> None:
    slots = FairSlots(3, per_site=2)
    await slots.acquire("a")
    await slots.acquire("a")
    third = asyncio.create_task(slots.acquire("a"))
    await asyncio.sleep(0)
    assert not third.done() and slots.running("a") == 2
    await slots.acquire("b")  # the slot a may not take
    third.cancel()
    await asyncio.gather(third, return_exceptions=True)
    assert slots.waiting == 0
    slots.release("a")
    assert slots.running("a") == 1
