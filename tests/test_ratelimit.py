"""The shared MeetBit rate limit: calendar-second windows (bridge/core/rate.py), their state in
the ledger shared by processes, and what MeetBit's headers (either form) make of it."""

from __future__ import annotations

import math
import multiprocessing
import random
import time
from multiprocessing.synchronize import Barrier

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.core.rate import (
    AUTO_CEILING,
    GUARD,
    LATE,
    START_RATE,
    Budget,
    Heard,
    RateState,
    budget_for,
    effective_rate,
    grant,
    hold_after,
    jittered,
    still_valid,
)
from bridge.delivery.dispatch import heard_of
from bridge.ledger import Ledger, Slot
from bridge.meetbit.ratelimit import MAX_SECONDS, RateLimitInfo, read_retry_after

# -- the schedule (pure) ------------------------------------------------------------------------


def take_all(budget: Budget, arrivals: list[float]) -> list[tuple[float, float, float]]:
    """Grant a slot to each arrival in turn: (window, at, send_by) per call."""
    state = RateState()
    out = []
    for now in arrivals:
        g, state = grant(state, now, budget)
        out.append((g.window, g.at, g.send_by))
    return out


@given(
    rate=st.sampled_from([1.0, 2.0, 5.0, 7.0, 10.0, 0.5, 0.25]),
    gaps=st.lists(st.floats(min_value=0, max_value=0.7), min_size=1, max_size=80),
)
@settings(max_examples=200, deadline=None)
def test_no_window_gets_more_than_its_budget_wherever_its_calls_land(
    rate: float, gaps: list[float]
) -> None:
    budget = budget_for(rate)
    arrivals, t = [], 1_000_000.25
    for gap in gaps:
        t += gap
        arrivals.append(t)
    slots = take_all(budget, arrivals)
    for (_window, at, send_by), now in zip(slots, arrivals, strict=True):
        assert at >= now and send_by - at >= 0.05 - 1e-9
    # A call leaves between its `at` and its `send_by`, then takes up to LATE to arrive: count
    # the windows it could be counted in. No window may be reachable by more than its budget.
    reach: dict[float, int] = {}
    for _window, at, send_by in slots:
        first = budget.window_of(at)
        last = budget.window_of(send_by + LATE - 1e-9)
        w = first
        while w <= last:
            reach[w] = reach.get(w, 0) + 1
            w += budget.span
    assert max(reach.values()) <= budget.calls


def test_a_quiet_bridge_calls_at_once_even_at_the_end_of_a_second() -> None:
    budget = budget_for(5)
    for frac in (0.0, 0.5, 0.84, 0.86, 0.99):
        g, _ = grant(RateState(), 1000 + frac, budget)
        assert g.at == 1000 + frac
    # Late in a second, the call may be counted in the next: it takes a slot of each.
    g, state = grant(RateState(), 1000.97, budget)
    assert (g.window, g.index, g.at, state.used, state.carry) == (1000, 0, 1000.97, 1, 1)
    g2, state = grant(state, 1000.98, budget)
    assert (g2.at, state.used, state.carry) == (1000.98, 2, 2)  # still at once
    g3, state = grant(state, 1001.0, budget)  # the next window starts with what was carried
    assert (g3.window, g3.index, state.used, state.carry) == (1001, 2, 3, 0)


def test_a_burst_fills_each_second_and_spreads_its_calls() -> None:
    slots = take_all(budget_for(5), [1000.0] * 12)
    windows = [w for w, _, _ in slots]
    assert windows == [1000] * 5 + [1001] * 5 + [1002] * 2
    starts = [at - w for w, at, _ in slots[:5]]
    assert starts == pytest.approx([i * (1 - GUARD) / 5 for i in range(5)])


def test_budget_of_a_rate() -> None:
    assert budget_for(5) == Budget(5, 1)
    assert budget_for(5.9) == Budget(5, 1)  # never more than the rate in a window
    assert budget_for(0.5) == Budget(1, 2)
    assert budget_for(300 / 60) == Budget(5, 1)
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError):
            budget_for(bad)


def test_auto_follows_the_headers_and_a_number_is_a_ceiling() -> None:
    assert effective_rate(None, 0) == START_RATE
    assert effective_rate(None, 10) == 10
    assert effective_rate(None, AUTO_CEILING * 10) == START_RATE  # absurd: not believed
    assert effective_rate(5, 10) == 5  # the headers only lower a number
    assert effective_rate(5, 2) == 2
    assert effective_rate(5, 0) == 5


def test_a_hold_voids_slots_given_before_it_and_a_lowered_budget_too() -> None:
    g, state = grant(RateState(), 1000.0, budget_for(5))
    assert still_valid(g, state, budget_for(5))
    held = RateState(state.window, state.used, paused_until=1000.5)
    assert not still_valid(g, held, budget_for(5))
    late, _ = grant(held, 1000.0, budget_for(5))
    assert late.at == 1000.5
    fifth = grant(RateState(1000.0, 4), 1000.0, budget_for(5))[0]
    assert fifth.index == 4 and not still_valid(fifth, RateState(), budget_for(3))


def test_remaining_zero_holds_to_the_next_second_never_past_the_reset() -> None:
    assert hold_after(Heard(remaining=0), 1000.3) == 1001.0
    assert hold_after(Heard(remaining=0, reset=1), 1000.3) == 1001.0
    assert hold_after(Heard(remaining=0, reset=0), 1000.3) == 1000.3
    assert hold_after(Heard(remaining=0, reset=30), 1000.3) == 1030.3  # a longer window
    assert hold_after(Heard(remaining=0, window=60), 1000.3) == 1060.3
    assert hold_after(Heard(remaining=1, reset=30), 1000.3) is None
    # Retry-After wins over everything else.
    assert hold_after(Heard(remaining=3, retry_after=7), 1000.3) == 1007.3
    assert hold_after(Heard(retry_after=10**9), 0) == 3600


def test_resumes_are_jittered_by_a_small_part_of_the_hold() -> None:
    rng = random.Random(5)
    ends = [jittered(1060.0, 1000.0, rng) for _ in range(50)]
    assert all(1060.0 <= e <= 1060.05 for e in ends) and len(set(ends)) > 40
    assert jittered(1000.1, 1000.0, rng) <= 1000.11


# -- the headers --------------------------------------------------------------------------------


def info(**headers: str) -> RateLimitInfo:
    return RateLimitInfo.from_headers({k.replace("_", "-"): v for k, v in headers.items()})


def test_meetbits_draft_06_headers() -> None:
    got = info(RateLimit_Limit="5", RateLimit_Remaining="0", RateLimit_Reset="1")
    assert (got.limit, got.remaining, got.reset, got.window) == (5, 0, 1.0, None)
    older = info(RateLimit_Limit="10, 10;w=1, 1000;w=3600")
    assert (older.limit, older.window) == (10, None)
    assert (info(RateLimit_Limit="300;w=60").limit, info(RateLimit_Limit="300;w=60").window) == (
        300,
        60.0,
    )


def test_the_current_drafts_headers_tightest_policy_wins() -> None:
    got = info(
        RateLimit_Policy='"client";q=5;w=1, "hour";q=3600;w=3600',
        RateLimit='"client";r=2;t=1, "hour";r=0;t=1800',
    )
    assert (got.limit, got.window) == (3600, 3600.0)  # 3600/h is 1/s, tighter than 5/s
    assert (got.remaining, got.reset) == (0, 1800.0)
    assert heard_of(got, 1000.0) == (1.0, 2800.0)
    token = info(RateLimit_Policy="default;q=10;w=1", RateLimit="default;r=9;t=1")
    assert (token.limit, token.remaining) == (10, 9)


def test_retry_after_forms() -> None:
    assert read_retry_after("7") == 7.0
    assert read_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert read_retry_after("86400") == MAX_SECONDS
    for bad in (None, "", "soon", "-1", "1e9", "nan", "7 7"):
        assert read_retry_after(bad) is None


HOSTILE = [
    "",
    " ",
    "-5",
    "5.5",
    "1e3",
    "NaN",
    "inf",
    "0x10",
    "９",  # a full-width digit: int() would take it
    "5\x00",
    "9" * 5000,
    "5;w=0",
    "5;w=-1",
    '"p";q=5;w=1',
    "5, ",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_are_dropped_never_guessed(value: str) -> None:
    got = info(RateLimit_Limit=value, RateLimit_Remaining=value, RateLimit_Reset=value)
    assert got.remaining is None and got.reset is None
    assert got.limit is None or got.limit == 5  # only "5, " still names a limit
    assert info(RateLimit=value, RateLimit_Policy=value).limit in (None, 5)


@given(st.dictionaries(st.sampled_from(
    ["RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "RateLimit", "RateLimit-Policy",
     "Retry-After"]), st.text(max_size=80)))  # fmt: skip
@settings(max_examples=400, deadline=None)
def test_any_header_values_give_sane_figures_or_none(headers: dict[str, str]) -> None:
    got = RateLimitInfo.from_headers(headers)
    assert got.limit is None or 1 <= got.limit <= 1_000_000
    assert got.remaining is None or 0 <= got.remaining <= 1_000_000
    assert got.reset is None or 0 <= got.reset <= MAX_SECONDS
    assert got.window is None or 1 <= got.window <= 86_400
    assert got.retry_after is None or 0 <= got.retry_after <= MAX_SECONDS
    limit, hold = heard_of(got, 1000.0)
    assert limit is None or 0 < limit <= AUTO_CEILING
    assert hold is None or 1000.0 <= hold <= 1000.0 + MAX_SECONDS


@given(
    q=st.integers(min_value=0, max_value=10**7),
    w=st.integers(min_value=0, max_value=10**6),
    r=st.integers(min_value=0, max_value=10**7),
    name=st.sampled_from(['"p"', "p", '"a b"', '"p\\"x"', "9bad"]),
)
def test_structured_fields_with_any_numbers(q: int, w: int, r: int, name: str) -> None:
    got = info(RateLimit_Policy=f"{name};q={q};w={w}", RateLimit=f"{name};r={r};t=1")
    if got.limit is not None:
        assert got.limit == q and 0 < q <= 1_000_000 and got.window == w
    if got.remaining is not None:
        assert got.remaining == r <= 1_000_000


# -- the shared state in the ledger ---------------------------------------------------------------


def take(led: Ledger, slot: Slot) -> float:
    """Take a slot, sleep to it and confirm it, as the dispatcher does: the time it goes."""
    while True:
        g = led.rate.take(slot)
        assert g is not None
        time.sleep(max(0.0, g.at - time.time()))
        with led.db.fast(write=False) as conn:
            if led.rate.check_in(conn, slot, g):
                return g.window


def take_many(url: str, barrier: Barrier, queue: multiprocessing.Queue[list[float]]) -> None:
    """One bridge process taking eight slots as fast as it can."""
    led = Ledger(url)
    try:
        barrier.wait(timeout=30)
        queue.put([take(led, Slot("meetbit", 5.0, 60)) for _ in range(8)])
    finally:
        led.dispose()


def test_processes_together_keep_each_second_within_the_budget(
    ledger: Ledger, database_url: str
) -> None:
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
    windows = sorted(w for r in results for w in r)
    per_window = {w: windows.count(w) for w in set(windows)}
    assert len(windows) == 24 and max(per_window.values()) <= 5
    # Packed, not spread out: 24 calls at 5 a second fill five seconds, maybe a sixth.
    assert len(per_window) <= 6


def test_slots_are_first_come_first_served_and_keys_independent(ledger: Ledger) -> None:
    slot = Slot("meetbit", 2.0, 5)
    first, second, third = (ledger.rate.take(slot) for _ in range(3))
    assert first is not None and second is not None and third is not None
    assert (first.window, first.index) < (second.window, second.index) < (third.window, 0)
    # Two a second: the third is in a later second (two later when the first two went in a
    # second's last moments, taking the next second's slots too).
    assert first.window < third.window <= first.window + 2
    other = ledger.rate.take(Slot("other", 2.0, 0))
    assert other is not None and other.at <= time.time()


def test_max_wait_takes_nothing(ledger: Ledger) -> None:
    ledger.rate.hold("meetbit", until=time.time() + 3)
    before = ledger.rate.state("meetbit")
    assert ledger.rate.take(Slot("meetbit", 5.0, 0.5)) is None
    assert ledger.rate.state("meetbit") == before
    later = ledger.rate.take(Slot("meetbit", 5.0, 5))
    assert later is not None and later.at >= before.paused_until


def test_a_hold_only_lengthens_and_holds_slots_given_before_it(ledger: Ledger) -> None:
    slot = Slot("meetbit", 100.0, 1)
    given_ = ledger.rate.take(slot)
    assert given_ is not None
    until = time.time() + 3.0  # e.g. MeetBit answered 429 with Retry-After: 3
    ledger.rate.hold("meetbit", until=until)
    ledger.rate.hold("meetbit", until=until - 2.0)  # an older, shorter hold never shortens
    assert until <= ledger.rate.state("meetbit").paused_until <= until + 0.05
    with ledger.db.fast(write=False) as conn:
        assert not ledger.rate.check_in(conn, slot, given_)
    assert ledger.rate.next_slot("meetbit", 100.0) >= until
    # A hold on a key never used before also holds its first call.
    ledger.rate.hold("fresh", until=until)
    assert ledger.rate.next_slot("fresh") >= until


def test_the_heard_limit_is_shared_and_lowers_the_budget(ledger: Ledger) -> None:
    ledger.rate.take(Slot("meetbit", None, 1))  # the row exists once a slot was taken
    with ledger.db.fast(write=True) as conn:
        ledger.rate.heard_in(conn, "meetbit", 2.0)
    assert ledger.rate.rate("meetbit", None) == 2.0
    assert ledger.rate.rate("meetbit", 1.0) == 1.0
    other = Ledger(ledger.url)  # another process sees it
    try:
        assert other.rate.rate("meetbit", 10.0) == 2.0
    finally:
        other.dispose()
