"""The shared MeetBit rate limit kept in the ledger: reservations are first come first served,
confirmed calls from several processes are never closer than one interval, and a 429 pause
holds every later call, reserved or not."""

from __future__ import annotations

import multiprocessing
import time
from multiprocessing.synchronize import Barrier
from typing import Any

import pytest

from bridge.ledger import Ledger

INTERVAL = 0.1
TOLERANCE = 1e-6


def take(led: Ledger, key: str, interval: float) -> float:
    """Reserve, sleep, confirm: what the dispatcher does before each call. Returns the time
    the confirming transaction stamped as the call's (read back inside it): a clock read by
    the caller afterwards moves with scheduling on a loaded machine, the stamp does not."""
    start = led.rate.reserve(key, interval=interval, max_wait=60)
    assert start is not None
    time.sleep(max(0.0, start - time.time()))
    stamped: list[float] = []

    def read_stamp(conn: Any) -> None:
        mark = "?" if led.db.dialect == "sqlite" else "%s"
        cursor = conn.cursor()
        cursor.execute(f"SELECT last_sent FROM rate_limits WHERE key = {mark}", (key,))
        stamped.append(float(cursor.fetchone()[0]))
        cursor.close()

    while (retry_at := led.rate.confirm(key, interval=interval, also=read_stamp)) is not None:
        time.sleep(max(0.0, retry_at - time.time()))
    return stamped[-1]


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
    # The stamps the ledger kept: never closer than one interval, whatever the load.
    gaps = [b - a for a, b in zip(taken, taken[1:], strict=False)]
    assert min(gaps) >= INTERVAL - TOLERANCE
    # Packed, not spread out: 30 calls need about 29 intervals.
    assert 29 * INTERVAL - 0.03 <= taken[-1] - taken[0] < 29 * INTERVAL + 2.0


def test_reservations_are_first_come_first_served(ledger: Ledger) -> None:
    # An interval far longer than three reservations take on a loaded machine.
    before = time.time()
    first = ledger.rate.reserve("meetbit", interval=5.0, max_wait=10)
    second = ledger.rate.reserve("meetbit", interval=5.0, max_wait=10)
    assert first is not None and second is not None
    assert before - TOLERANCE <= first <= time.time()
    assert second == pytest.approx(first + 5.0, abs=TOLERANCE)
    # Keys are independent.
    other = ledger.rate.reserve("other", interval=5.0, max_wait=0)
    assert other is not None and other < second


def test_max_wait_reserves_nothing(ledger: Ledger) -> None:
    first = ledger.rate.reserve("meetbit", interval=1.0, max_wait=0)
    assert first is not None
    slot = ledger.rate.next_slot("meetbit")
    assert ledger.rate.reserve("meetbit", interval=1.0, max_wait=0.5) is None
    assert ledger.rate.next_slot("meetbit") == pytest.approx(slot, abs=TOLERANCE)
    later = ledger.rate.reserve("meetbit", interval=1.0, max_wait=5)
    assert later == pytest.approx(first + 1.0, abs=TOLERANCE)


def test_confirm_holds_the_spacing_of_actual_calls(ledger: Ledger) -> None:
    assert ledger.rate.confirm("meetbit", interval=0.3) is None
    sent = time.time()
    # A caller whose reserved start came early (or who woke late behind another) waits.
    retry_at = ledger.rate.confirm("meetbit", interval=0.3)
    assert retry_at is not None and sent - 0.05 + 0.3 <= retry_at <= sent + 0.3
    time.sleep(max(0.0, retry_at - time.time()))
    assert ledger.rate.confirm("meetbit", interval=0.3) is None


def test_next_slot_is_now_for_an_unused_key(ledger: Ledger) -> None:
    before = time.time()
    assert before <= ledger.rate.next_slot("fresh") <= time.time()


def test_a_pause_holds_slots_reserved_before_it(ledger: Ledger) -> None:
    start = ledger.rate.reserve("meetbit", interval=0.01, max_wait=1)
    assert start is not None
    until = time.time() + 3.0  # e.g. MeetBit answered 429 with Retry-After: 3
    ledger.rate.pause("meetbit", until=until)
    ledger.rate.pause("meetbit", until=until - 2.0)  # an older, shorter pause never shortens
    # The slot reserved before the 429 may not be used before the pause ends...
    assert ledger.rate.confirm("meetbit", interval=0.01) == pytest.approx(until, abs=TOLERANCE)
    # ...and every new reservation comes after it.
    assert ledger.rate.next_slot("meetbit") >= until
    assert ledger.rate.reserve("meetbit", interval=0.01, max_wait=1) is None
    later = ledger.rate.reserve("meetbit", interval=0.01, max_wait=10)
    assert later is not None and later >= until
    # A pause on a key never used before also holds its first call.
    ledger.rate.pause("fresh", until=until)
    assert ledger.rate.confirm("fresh", interval=0.01) == pytest.approx(until, abs=TOLERANCE)
