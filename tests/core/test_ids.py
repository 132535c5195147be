"""Time-ordered ids: real UUIDs, unique, and sorted as they were made."""

import time
import uuid

from docuhooks.core.ids import uuid7


def test_an_id_is_a_canonical_version_7_uuid_carrying_the_time() -> None:
    before = time.time_ns() // 1_000_000
    value = uuid7()
    after = time.time_ns() // 1_000_000
    parsed = uuid.UUID(value)
    assert str(parsed) == value, "canonical text: lower-case, hyphenated"
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert before <= int(value.replace("-", "")[:12], 16) <= after


def test_ids_are_unique_and_their_text_sorts_in_the_order_of_their_milliseconds() -> None:
    made: list[str] = []
    for _ in range(50):
        made.extend(uuid7() for _ in range(200))
        time.sleep(0.002)
    assert len(set(made)) == len(made)
    millis = [value[:13] for value in made]
    assert millis == sorted(millis), "a later millisecond never sorts before an earlier one"
    # Within one millisecond the rest is random: the ids are not guessable from each other.
    random_parts = {value[14:] for value in made}
    assert len(random_parts) == len(made)


def test_the_random_bits_are_spread_over_the_whole_random_field() -> None:
    values = [uuid.UUID(uuid7()).int for _ in range(4000)]
    rand_a = {(v >> 64) & 0xFFF for v in values}
    rand_b_high = {(v >> 50) & 0xFFF for v in values}
    rand_b_low = {v & 0xFFF for v in values}
    # 4000 draws from 4096 values: a field fed by random bits takes well over 2000 of them.
    for field in (rand_a, rand_b_high, rand_b_low):
        assert len(field) > 2000
    # And the fields are not copies of each other (the bug this guards against).
    assert sum(((v >> 64) & 0xFFF) == (v & 0xFFF) for v in values) < 20


def test_random_values_are_never_handed_out_twice_even_in_a_forked_child() -> None:
    import os

    from docuhooks.core.ids import random_bytes

    seen = {random_bytes(16) for _ in range(1000)}  # several refills of the page
    assert len(seen) == 1000
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next value, and leave at once
        os.write(write, random_bytes(16))
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 16)
    os.close(read)
    os.close(write)
    assert child != random_bytes(16)
