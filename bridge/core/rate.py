"""MeetBit's rate as the bridge spends it: windows of calendar seconds, a budget of calls in
each, and what MeetBit's answers say about both. Pure: the ledger keeps the state every process
shares (`bridge/ledger/ratelimit.py`), the dispatcher feeds in the answers' headers.

MeetBit counts calls per calendar second, by arrival (contract section 14). So calls are not
spaced evenly by an interval (a spacing a stalled process breaks, by going out bunched with
the next): each window of one second has `calls` slots, given first come first served, none in
the window's last `GUARD` seconds, and a call must be sent before its window's end less `LATE`
(`Grant.send_by`) or give its slot up and take a new one. A late call can then never be
counted in the next window, whatever the stall; the guard absorbs the way to MeetBit.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

__all__ = [
    "AUTO_CEILING",
    "GUARD",
    "LATE",
    "LEAD",
    "MAX_HOLD",
    "START_RATE",
    "Budget",
    "Grant",
    "Heard",
    "RateState",
    "budget_for",
    "effective_rate",
    "grant",
    "hold_after",
    "jittered",
    "still_valid",
]

# No slot starts in a window's last GUARD seconds; a call not sent by LATE seconds before the
# window ends gives its slot up. The difference is the most a call may take to reach MeetBit
# (loopback: a millisecond; a stalled host: the rest) before it could count in the next window.
GUARD = 0.2
LATE = 0.1
# A slot is given in its own window only if this much is left before `send_by`.
LEAD = 0.05
# `MEETBIT_RATE_LIMIT=auto` starts at MeetBit's default Client limit and follows the headers;
# a heard limit above AUTO_CEILING per second is not believed (MeetBit's are 5 to 10).
START_RATE = 5.0
AUTO_CEILING = 100.0
# The longest any header may hold the bridge's calls: a `Retry-After: 86400` is not believed.
MAX_HOLD = 3600.0
# Resumes after a hold are spread over up to this much (and a tenth of the hold), so that
# every process and instance does not knock at the same instant when it ends.
JITTER = 0.05


@dataclass(frozen=True)
class Budget:
    """`calls` per window of `span` whole seconds (windows start at multiples of `span`)."""

    calls: int
    span: int

    def window_of(self, t: float) -> float:
        return float(math.floor(t / self.span) * self.span)


def budget_for(rate: float) -> Budget:
    """The window budget of `rate` calls per second: 5/s is 5 calls each second, 0.5/s one
    call every two seconds. MeetBit's limits are whole calls per second; a fraction above one
    is rounded down (never more than the rate in any window)."""
    if not math.isfinite(rate) or rate <= 0:
        raise ValueError(f"rate must be a positive number, not {rate!r}")
    if rate >= 1:
        return Budget(calls=math.floor(rate), span=1)
    return Budget(calls=1, span=math.ceil(1 / rate - 1e-9))


def effective_rate(ceiling: float | None, heard: float) -> float:
    """Calls per second to spend: `ceiling` None is `auto` (START_RATE until a limit is heard,
    then the heard one); a number is a hard ceiling that a heard limit can only lower."""
    if ceiling is None:
        return heard if 0 < heard <= AUTO_CEILING else START_RATE
    return min(ceiling, heard) if heard > 0 else ceiling


@dataclass(frozen=True)
class RateState:
    """One limiter's shared state: the window (its start, epoch seconds) of the latest slot
    given, how many of its slots are given, how many of the next window's are given already
    (`carry`: calls sent in this window's last moments, which may be counted in either), the
    end of a hold (429, `Remaining: 0`), and the limit MeetBit's headers last gave, in calls
    per second (0: none heard)."""

    window: float = 0.0
    used: int = 0
    paused_until: float = 0.0
    heard: float = 0.0
    carry: int = 0


@dataclass(frozen=True)
class Grant:
    """A slot: its window and index there, when the call may go (`at`), and by when it must
    be sent (`send_by`) or given up."""

    window: float
    index: int
    at: float
    send_by: float


def grant(state: RateState, now: float, budget: Budget) -> tuple[Grant, RateState]:
    """The next free slot at or after `now` (and after any hold), and the state that gives it.

    Slots of a window are spread over its first `span - GUARD` seconds in index order; a
    caller arriving mid-window takes the next index at once rather than waiting for its
    nominal offset, so a quiet bridge calls without delay. A caller arriving in a window's
    last moments (too late to be sure of reaching MeetBit within it) still goes at once while
    the window and the next both have room: it takes a slot of each, since it may be counted
    in either."""
    start = max(now, state.paused_until)
    window, used, carry = state.window, state.used, state.carry
    current = budget.window_of(start)
    if window < current:
        # The state's window is over; the one after it starts with what was carried into it.
        used, carry = (carry, 0) if window + budget.span == current else (0, 0)
        window = current
    spread = (budget.span - GUARD) / budget.calls
    while True:
        if used >= budget.calls:
            window, used, carry = window + budget.span, carry, 0
            continue
        at = max(start, window + used * spread)
        if at > window + budget.span - LATE - LEAD:
            # Only a caller that arrived in this window's last moments can be here (the spread
            # ends GUARD before): it needs a slot of the next window as well.
            if carry >= budget.calls:
                window, used, carry = window + budget.span, carry, 0
                continue
            taken = replace(state, window=window, used=used + 1, carry=carry + 1)
            return Grant(window, used, at, window + 2 * budget.span - LATE), taken
        taken = replace(state, window=window, used=used + 1, carry=carry)
        return Grant(window, used, at, window + budget.span - LATE), taken


def still_valid(given: Grant, state: RateState, budget: Budget) -> bool:
    """Whether a slot given earlier may still be used: no hold written since covers it, and
    the budget (lowered by a header meanwhile) still has its index."""
    return state.paused_until <= given.at and given.index < budget.calls


@dataclass(frozen=True)
class Heard:
    """What one MeetBit answer says about the rate, already checked for sense: `limit` in calls
    per second (None: nothing believable), `window` in seconds (None: MeetBit's one second),
    `remaining` and `reset` (seconds), and `retry_after` (seconds) when sent."""

    limit: float | None = None
    window: float | None = None
    remaining: int | None = None
    reset: float | None = None
    retry_after: float | None = None


def hold_after(heard: Heard, answered_at: float) -> float | None:
    """Until when every process must hold its calls after this answer, if at all.

    `Retry-After` wins; else `Remaining: 0` holds until the window ends: with MeetBit's
    one-second window the next calendar second, never later than `reset` seconds after the
    answer; a `reset` beyond one second (a longer window) is waited out whole. Without a
    usable `reset`, a window longer than a second is waited out whole too."""
    if heard.retry_after is not None:
        return answered_at + min(max(heard.retry_after, 0.0), MAX_HOLD)
    if heard.remaining is None or heard.remaining > 0:
        return None
    reset = heard.reset if heard.reset is not None and 0 <= heard.reset <= MAX_HOLD else None
    if reset is not None and reset > 1:
        return answered_at + reset
    if reset is None and heard.window is not None and heard.window > 1:
        return answered_at + min(heard.window, MAX_HOLD)
    end = math.floor(answered_at) + 1.0
    return min(end, answered_at + reset) if reset is not None else end


def jittered(until: float, now: float, rng: random.Random | None = None) -> float:
    """`until` pushed back by a random part of JITTER (at most a tenth of the hold)."""
    spread = min(JITTER, max(0.0, until - now) / 10)
    return until + (rng or random).uniform(0.0, spread)
