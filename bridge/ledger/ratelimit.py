"""The MeetBit rate limits shared by every process and instance on one ledger: one row per
MeetBit account (`key`), holding the state `bridge.core.rate` decides on.

No row lock is held longer than one statement: a slot is offered from a plain read and taken
by a compare-and-set UPDATE (the row must still be as read), which is the last statement of
the caller's transaction; when another process took a slot in between, the offer is made again
(on SQLite, `BEGIN IMMEDIATE` makes the writer alone, so it never is). Headers are recorded by
an UPDATE that matches, and so locks, nothing when they change nothing. Times are epoch seconds
from `time.time()`; hosts sharing a PostgreSQL ledger are assumed to be NTP-synced.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from bridge.core.rate import (
    Budget,
    Grant,
    RateState,
    budget_for,
    effective_rate,
    grant,
    jittered,
    still_valid,
)
from bridge.ledger.database import Database, Insert
from bridge.ledger.prepared import Conn
from bridge.ledger.tables import rate_limits

__all__ = ["Offer", "RateLimiter", "Slot", "SlotTaken"]

_r = rate_limits.c
_by_key = _r.key == sa.bindparam("p_key", type_=_r.key.type)
_READ = sa.select(_r.window_start, _r.used, _r.paused_until, _r.heard, _r.carry).where(_by_key)


def _p(name: str, column: sa.Column[Any]) -> Any:
    return sa.bindparam(name, type_=column.type)


# Compare-and-set: the row as it was read, or nothing is written.
_TAKE = (
    sa.update(rate_limits)
    .where(
        _by_key,
        _r.window_start == _p("p_old_window", _r.window_start),
        _r.used == _p("p_old_used", _r.used),
        _r.paused_until == _p("p_old_paused", _r.paused_until),
        _r.heard == _p("p_old_heard", _r.heard),
        _r.carry == _p("p_old_carry", _r.carry),
    )
    .values(
        window_start=_p("p_window", _r.window_start),
        used=_p("p_used", _r.used),
        carry=_p("p_carry", _r.carry),
    )
)
# A hold only ever lengthens; a heard limit replaces the last one. Matches (and locks) the row
# only when it changes something, so the common answer writes nothing.
_HOLD = (
    sa.update(rate_limits)
    .where(_by_key, _r.paused_until < _p("p_until", _r.paused_until))
    .values(paused_until=_p("p_until", _r.paused_until))
)
_HEARD = (
    sa.update(rate_limits)
    .where(_by_key, _r.heard != _p("p_heard", _r.heard))
    .values(heard=_p("p_heard", _r.heard))
)


def _create(insert: Any) -> sa.ClauseElement:
    stmt: Insert = insert(rate_limits)
    return stmt.on_conflict_do_nothing(index_elements=["key"])


def _pause(insert: Any) -> sa.ClauseElement:
    # Also creates the row: a 429 may be the first thing heard of an account.
    stmt: Insert = insert(rate_limits)
    excluded = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=["key"],
        set_={
            "paused_until": sa.case(
                (excluded.paused_until > _r.paused_until, excluded.paused_until),
                else_=_r.paused_until,
            )
        },
    )


@dataclass(frozen=True)
class Slot:
    """What a caller asks of the limiter: the account's key, its ceiling in calls per second
    (None: `auto`), and how long it may wait for a slot."""

    key: str
    ceiling: float | None
    max_wait: float


@dataclass(frozen=True)
class Offer:
    """A slot offered from one read of the row: `given` (None when its start is beyond the
    caller's `max_wait`: then `next_free` says when one would be), and the row's state as read
    and as taking it would leave it."""

    now: float
    given: Grant | None
    next_free: float
    read: RateState
    taken: RateState

    @property
    def immediate(self) -> bool:
        """The call may go at once (its slot starts now)."""
        return self.given is not None and self.given.at <= self.now


class SlotTaken(Exception):
    """Another process changed the row between the read and the take: offer again."""


class RateLimiter:
    def __init__(self, db: Database, rng: random.Random | None = None) -> None:
        self.db = db
        self.rng = rng or random.Random()

    # -- reading --------------------------------------------------------------------------------

    def state_in(self, conn: Conn, key: str) -> RateState:
        row = self.db.prepared(_READ).first(conn, {"p_key": key})
        if row is None:
            return RateState()
        return RateState(
            float(row.window_start),
            int(row.used),
            float(row.paused_until),
            float(row.heard),
            int(row.carry),
        )

    def state(self, key: str) -> RateState:
        with self.db.fast(write=False) as conn:
            return self.state_in(conn, key)

    def budget(self, state: RateState, ceiling: float | None) -> Budget:
        return budget_for(effective_rate(ceiling, state.heard))

    def rate(self, key: str, ceiling: float | None) -> float:
        """Calls per second the account may make now (its ceiling, lowered by the headers)."""
        return effective_rate(ceiling, self.state(key).heard)

    # -- slots ----------------------------------------------------------------------------------

    def offer_in(self, conn: Conn, slot: Slot) -> Offer:
        """A slot from the row as it is now; writes nothing (see `take_in`)."""
        state = self.state_in(conn, slot.key)
        now = time.time()
        given, taken = grant(state, now, self.budget(state, slot.ceiling))
        if given.at - now > slot.max_wait:
            return Offer(now, None, given.at, state, state)
        return Offer(now, given, given.at, state, taken)

    def take_in(self, conn: Conn, key: str, offer: Offer) -> None:
        """Take an offered slot: the compare-and-set, meant as the transaction's last statement.
        Raises SlotTaken when the row changed since `offer_in` read it."""
        assert offer.given is not None
        old, new = offer.read, offer.taken
        if old == RateState():
            self.db.prepared(_create).run(conn, _row(key, old))
        params = {
            "p_key": key,
            "p_old_window": old.window,
            "p_old_used": old.used,
            "p_old_paused": old.paused_until,
            "p_old_heard": old.heard,
            "p_old_carry": old.carry,
            "p_window": new.window,
            "p_used": new.used,
            "p_carry": new.carry,
        }
        if self.db.prepared(_TAKE).run(conn, params) != 1:
            raise SlotTaken(key)

    def take(self, slot: Slot) -> Grant | None:
        """A slot in a transaction of its own (None: none within `max_wait`, nothing taken)."""
        while True:
            try:
                with self.db.fast(write=True) as conn:
                    offer = self.offer_in(conn, slot)
                    if offer.given is not None:
                        self.take_in(conn, slot.key, offer)
                    return offer.given
            except SlotTaken:
                continue

    def check_in(self, conn: Conn, slot: Slot, given: Grant) -> bool:
        """At a slot's start: whether it may still be used (no hold written since covers it,
        the budget still has its index)."""
        state = self.state_in(conn, slot.key)
        return still_valid(given, state, self.budget(state, slot.ceiling))

    def next_slot(self, key: str, ceiling: float | None = None) -> float:
        """When a slot would start now (takes nothing): for "retry at" hints."""
        with self.db.fast(write=False) as conn:
            state = self.state_in(conn, key)
        given, _ = grant(state, time.time(), self.budget(state, ceiling))
        return given.at

    # -- what MeetBit said ----------------------------------------------------------------------

    def hold_in(self, conn: Conn, key: str, until: float) -> None:
        """Hold every process's calls until `until` (jittered), e.g. after a 429; a hold only
        lengthens. Creates the row when needed."""
        until = jittered(until, time.time(), self.rng)
        values = _row(key, RateState(paused_until=until))
        self.db.prepared(_pause).run(conn, values)

    def hold(self, key: str, *, until: float) -> None:
        with self.db.fast(write=True) as conn:
            self.hold_in(conn, key, until)

    pause = hold

    def heard_in(self, conn: Conn, key: str, limit: float) -> None:
        """Record the limit MeetBit's headers gave, in calls per second (writes only a change)."""
        self.db.prepared(_HEARD).run(conn, {"p_key": key, "p_heard": limit})

    def extend_in(self, conn: Conn, key: str, until: float) -> None:
        """`hold_in` for a row known to exist, writing (and locking) nothing when a hold as long
        is already there: the form for `Remaining: 0` answers. Not jittered: the hold ends
        where the next window's slots begin, which spread the resumes already (a jittered end
        would void the next window's first slots)."""
        self.db.prepared(_HOLD).run(conn, {"p_key": key, "p_until": until})


def _row(key: str, state: RateState) -> dict[str, Any]:
    return {
        "key": key,
        "window_start": state.window,
        "used": state.used,
        "paused_until": state.paused_until,
        "heard": state.heard,
        "carry": state.carry,
    }
