"""The start-up freeze: long-lived objects leave the collector's full passes."""

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from docuhooks.memory import freeze_long_lived, start_frozen
from docuhooks.server import components
from docuhooks.settings import Settings


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the rest of the test session collects as usual


def test_freezing_moves_everything_alive_out_of_the_collectors_walk(unfrozen: None) -> None:
    assert gc.get_freeze_count() == 0
    kept = [[n] for n in range(10_000)]  # tracked containers, alive across the freeze
    freeze_long_lived()
    assert gc.get_freeze_count() >= len(kept)
    # A full collection now walks only what was made since: none of the frozen objects.
    assert sum(len(generation) for generation in (gc.get_objects(i) for i in range(3))) < (
        gc.get_freeze_count()
    )


async def test_serve_freezes_last_once_everything_has_started(
    unfrozen: None, tmp_path: Path
) -> None:
    parts = components(Settings(data_dir=tmp_path, secret_key="k" * 20))
    assert parts[-1] is start_frozen
    stop = await start_frozen(None)
    assert gc.get_freeze_count() > 0
    await stop()
