"""The render pool: each job is held to its time, memory and output limits in a worker
process; a job past a limit, or whose worker dies, fails alone, and the pool goes on."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest
from docx_factory import standard_template
from hostile_docx import LOOPING, OUTPUT_BLOW_UP, RECURSION, document_bomb, template

from docuhooks.answers import Answer, AnswerSet, AnswerType, VariableDef
from docuhooks.errors import LimitExceeded, ValidationFailed
from docuhooks.platform.renderpool import RenderLimits, RenderPool, worker_pids

MiB = 1024 * 1024
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
    info = await pool.inspect(standard_template())
    assert "Client_Name" in info.placeholders
    document = await pool.assemble(standard_template(), AnswerSet(), ())
    assert document.startswith(b"PK")


async def test_a_render_past_the_time_limit_is_killed_and_the_pool_serves_the_next(
    pool: RenderPool,
) -> None:
    await pool.start()
    before = set(worker_pids(pool))
    with pytest.raises(LimitExceeded) as refused:
        await pool.assemble(template(LOOPING), AnswerSet(), ())
    assert refused.value.code == "render_time_limit"
    assert refused.value.status == 422
    assert "render_time_limit_seconds" in refused.value.message
    assert refused.value.details[0].field == "answers"
    # The looping worker is gone; the next job gets a fresh one.
    assert (await pool.assemble(standard_template(), AnswerSet(), ())).startswith(b"PK")
    after = set(worker_pids(pool))
    assert len(before - after) == 1


async def test_a_looping_render_does_not_hold_up_the_other_worker(pool: RenderPool) -> None:
    looping = asyncio.create_task(pool.assemble(template(LOOPING), AnswerSet(), ()))
    # Proven by order: the second job finishes while the first is still running.
    document = await pool.assemble(standard_template(), AnswerSet(), ())
    assert document.startswith(b"PK")
    assert not looping.done()
    with pytest.raises(LimitExceeded):
        await looping


async def test_output_over_the_limit_is_refused_before_it_is_built(pool: RenderPool) -> None:
    with pytest.raises(LimitExceeded) as refused:
        await pool.assemble(template(OUTPUT_BLOW_UP), blow_up_answers(), NAME_AND_FEE)
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
            )
        assert refused.value.code == "render_output_too_large"
    finally:
        await pool.close()


async def test_memory_past_the_limit_fails_the_job_not_the_pool(pool: RenderPool) -> None:
    with pytest.raises(LimitExceeded) as refused:
        await pool.run(allocate, 2048 * MiB)
    assert refused.value.code == "render_memory_limit"
    assert "render_memory_limit_bytes" in refused.value.message
    assert await pool.run(allocate, MiB) == MiB


async def test_a_render_that_needs_too_much_memory_is_refused() -> None:
    # The output budget set high, so that only the memory limit stands in the way.
    limits = RenderLimits(time_seconds=30, memory_bytes=512 * MiB, output_bytes=4096 * MiB)
    pool = RenderPool(1, limits)
    try:
        with pytest.raises(LimitExceeded) as refused:
            await pool.assemble(
                template(OUTPUT_BLOW_UP), blow_up_answers(fee=2_000_000), NAME_AND_FEE
            )
        assert refused.value.code == "render_memory_limit"
    finally:
        await pool.close()


async def test_a_worker_that_dies_fails_only_its_own_job(pool: RenderPool) -> None:
    with pytest.raises(LimitExceeded) as refused:
        await pool.run(crash)
    assert refused.value.code == "render_crashed"
    assert "exit code 7" in refused.value.message
    assert await pool.run(allocate, 10) == 10


async def test_template_errors_are_validation_failures_with_the_reason(pool: RenderPool) -> None:
    with pytest.raises(ValidationFailed) as refused:
        await pool.assemble(template(RECURSION), AnswerSet(), ())
    assert "calls itself" in refused.value.message
    with pytest.raises(ValidationFailed, match="Range too big"):
        await pool.assemble(template("{{ range(10**8) | list }}"), AnswerSet(), ())
    with pytest.raises(ValidationFailed, match="exponents"):
        await pool.assemble(template("{{ 9 ** 99999999 }}"), AnswerSet(), ())


async def test_a_bomb_is_refused_by_the_docx_limits(pool: RenderPool) -> None:
    with pytest.raises(LimitExceeded) as refused:
        await pool.inspect(document_bomb(40 * MiB))
    assert refused.value.code == "docx_too_large_uncompressed"
    assert refused.value.status == 413
    assert refused.value.details[0].field == "file"


async def test_a_closed_pool_answers_unavailable_and_leaves_no_worker(pool: RenderPool) -> None:
    await pool.start()
    pids = worker_pids(pool)
    looping = asyncio.create_task(pool.assemble(template(LOOPING), AnswerSet(), ()))
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
