"""The shared MeetBit rate limit kept in the ledger: several processes together never take
slots closer than one interval, a slot not yet due is not taken, and a 429 pause holds every
later call."""

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


def take(led: Ledger, key: str, interval: float) -> float:
    """Wait for the slot like the dispatcher does; returns when it was taken."""
    while (due := led.acquire_slot(key, interval=interval)) is not None:
        time.sleep(max(0.0, due - time.time()))
    return time.time()


def take_many(url: str, barrier: Barrier, queue: multiprocessing.Queue[list[float]]) -> None:
    """One bridge process taking ten slots as fast as it can."""
    led = Ledger(url)
    try:
        barrier.wait(timeout=30)
        queue.put([take(led, "meetbit", INTERVAL) for _ in range(10)])
    finally:
        led.dispose()


def test_processes_together_keep_the_spacing(ledger: Ledger, database_url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(3)
    queue: multiprocessing.Queue[list[float]] = ctx.Queue()
    procs = [ctx.Process(target=take_many, args=(database_url, barrier, queue)) for _ in range(3)]
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

    taken = sorted(s for r in results for s in r)
    assert len(taken) == 30
    # Each slot is stamped inside its transaction and the caller's clock is read after it, so
    # the callers' times can only be later; spacing is checked on the ledger's own record.
    assert ledger.next_slot("meetbit") >= taken[0] + 29 * INTERVAL - 0.01
    # Not one burst, and packed rather than spread out: 30 calls need about 29 intervals.
    assert 29 * INTERVAL - 0.05 <= taken[-1] - taken[0] < 29 * INTERVAL + 2.0


def test_a_slot_is_taken_only_when_due(ledger: Ledger) -> None:
    before = time.time()
    assert ledger.acquire_slot("meetbit", interval=0.2) is None
    due = ledger.acquire_slot("meetbit", interval=0.2)
    assert due is not None and before + 0.2 - TOLERANCE <= due <= time.time() + 0.2
    # Asking again before it is due takes nothing and does not push the slot back.
    assert ledger.acquire_slot("meetbit", interval=0.2) == pytest.approx(due, abs=TOLERANCE)
    assert ledger.next_slot("meetbit") == pytest.approx(due, abs=TOLERANCE)
    # Keys are independent.
    assert ledger.acquire_slot("other", interval=0.2) is None
    time.sleep(max(0.0, due - time.time()))
    assert ledger.acquire_slot("meetbit", interval=0.2) is None


def test_next_slot_is_now_for_an_unused_key(ledger: Ledger) -> None:
    before = time.time()
    assert before <= ledger.next_slot("fresh") <= time.time()


def test_pause_holds_every_later_slot_past_until(ledger: Ledger) -> None:
    assert ledger.acquire_slot("meetbit", interval=0.01) is None
    until = time.time() + 3.0  # e.g. MeetBit answered 429 with Retry-After: 3
    ledger.pause_calls("meetbit", until=until)
    ledger.pause_calls("meetbit", until=until - 2.0)  # an older, shorter pause never shortens
    assert ledger.next_slot("meetbit") >= until
    time.sleep(0.05)
    assert ledger.acquire_slot("meetbit", interval=0.01) == pytest.approx(until, abs=TOLERANCE)
    # A pause on a key never used before also holds its first call.
    ledger.pause_calls("fresh", until=until)
    due = ledger.acquire_slot("fresh", interval=0.01)
    assert due is not None and due >= until
