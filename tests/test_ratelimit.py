"""The shared MeetBit rate limit kept in the ledger: several processes together never exceed
one call per interval, a reservation too far away reserves nothing, and a 429 pause holds
every later call."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from multiprocessing.synchronize import Barrier

import pytest

from bridge.ledger import Ledger

INTERVAL = 0.05
TOLERANCE = 1e-6


@pytest.fixture
def ledger(database_url: str) -> Iterator[Ledger]:
    led = Ledger(database_url)
    led.ensure_schema()
    try:
        yield led
    finally:
        led.dispose()


def reserve_many(url: str, barrier: Barrier, queue: multiprocessing.Queue[list[float]]) -> None:
    """One bridge process taking ten slots as fast as it can."""
    led = Ledger(url)
    try:
        barrier.wait(timeout=30)
        starts = []
        for _ in range(10):
            start = led.reserve_slot("meetbit", interval=INTERVAL, max_wait=30)
            assert start is not None
            starts.append(start)
        queue.put(starts)
    finally:
        led.dispose()


def test_processes_together_keep_the_spacing(ledger: Ledger, database_url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(3)
    queue: multiprocessing.Queue[list[float]] = ctx.Queue()
    procs = [
        ctx.Process(target=reserve_many, args=(database_url, barrier, queue)) for _ in range(3)
    ]
    for p in procs:
        p.start()
    try:
        results = [queue.get(timeout=60) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
        queue.close()
        queue.join_thread()
    assert all(p.exitcode == 0 for p in procs)
    for p in procs:
        p.close()

    starts = sorted(s for r in results for s in r)
    assert len(starts) == 30
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert min(gaps) >= INTERVAL - TOLERANCE
    # The slots were packed, not spread out: 30 calls need about 29 intervals.
    assert starts[-1] - starts[0] < 29 * INTERVAL + 2.0
    assert ledger.next_slot("meetbit") >= starts[-1] + INTERVAL - TOLERANCE


def test_reservations_in_one_process_are_spaced(ledger: Ledger) -> None:
    before = time.time()
    first = ledger.reserve_slot("meetbit", interval=0.2, max_wait=5)
    second = ledger.reserve_slot("meetbit", interval=0.2, max_wait=5)
    assert first is not None and second is not None
    assert before - TOLERANCE <= first <= time.time()
    assert second - first >= 0.2 - TOLERANCE
    # Keys are independent.
    other = ledger.reserve_slot("other", interval=0.2, max_wait=0)
    assert other is not None and other < second


def test_max_wait_reserves_nothing(ledger: Ledger) -> None:
    first = ledger.reserve_slot("meetbit", interval=1.0, max_wait=0)
    assert first is not None
    slot = ledger.next_slot("meetbit")
    assert slot >= first + 1.0 - TOLERANCE
    assert ledger.reserve_slot("meetbit", interval=1.0, max_wait=0.5) is None
    assert ledger.reserve_slot("meetbit", interval=1.0, max_wait=0.5) is None
    assert ledger.next_slot("meetbit") == pytest.approx(slot, abs=TOLERANCE)
    # A caller willing to wait gets the very next slot, not one pushed back by the refusals.
    later = ledger.reserve_slot("meetbit", interval=1.0, max_wait=5)
    assert later == pytest.approx(first + 1.0, abs=TOLERANCE)


def test_next_slot_is_now_for_an_unused_key(ledger: Ledger) -> None:
    before = time.time()
    assert before <= ledger.next_slot("fresh") <= time.time()


def test_pause_pushes_every_later_slot_past_until(ledger: Ledger) -> None:
    assert ledger.reserve_slot("meetbit", interval=0.01, max_wait=1) is not None
    until = time.time() + 3.0  # e.g. MeetBit answered 429 with Retry-After: 3
    ledger.pause_calls("meetbit", until=until)
    ledger.pause_calls("meetbit", until=until - 2.0)  # an older, shorter pause never shortens
    assert ledger.next_slot("meetbit") >= until
    assert ledger.reserve_slot("meetbit", interval=0.01, max_wait=1) is None
    starts = [ledger.reserve_slot("meetbit", interval=0.01, max_wait=10) for _ in range(3)]
    assert all(s is not None and s >= until for s in starts)
    # A pause on a key never used before also holds its first call.
    ledger.pause_calls("fresh", until=until)
    first = ledger.reserve_slot("fresh", interval=0.01, max_wait=10)
    assert first is not None and first >= until
