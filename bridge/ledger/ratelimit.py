"""The MeetBit rate limit shared by every process on one ledger.

GCRA: one row per key holds the "theoretical arrival time" (`tat`, the earliest start the next
reservation may have), the end of a 429 pause, and when the last call actually went out.
Reservations order callers first come first served; the confirmation at a reservation's start
decides the actual call, against the last actual send and any pause written meanwhile, so a
caller that woke late or slept through a 429 still keeps the spacing. Times are epoch seconds
from `time.time()`; hosts sharing a PostgreSQL ledger are assumed to be NTP-synced.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from bridge.ledger.database import Database, Insert
from bridge.ledger.prepared import Conn
from bridge.ledger.tables import rate_limits

_r = rate_limits.c
_by_key = _r.key == sa.bindparam("p_key", type_=_r.key.type)
_LOCKED = sa.select(rate_limits).where(_by_key).with_for_update()
_READ = sa.select(rate_limits).where(_by_key)
_RESERVE = (
    sa.update(rate_limits).where(_by_key).values(tat=sa.bindparam("p_tat", type_=_r.tat.type))
)
_SENT = (
    sa.update(rate_limits)
    .where(_by_key)
    .values(last_sent=sa.bindparam("p_last_sent", type_=_r.last_sent.type))
)
_TAKE = (
    sa.update(rate_limits)
    .where(_by_key)
    .values(
        tat=sa.bindparam("p_tat", type_=_r.tat.type),
        last_sent=sa.bindparam("p_last_sent", type_=_r.last_sent.type),
    )
)


def _create(insert: Any) -> sa.ClauseElement:
    stmt: Insert = insert(rate_limits)
    return stmt.on_conflict_do_nothing(index_elements=["key"])


def _pause(insert: Any) -> sa.ClauseElement:
    # A pause only ever lengthens: an older, shorter one arriving late changes nothing.
    stmt: Insert = insert(rate_limits)
    excluded = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=["key"],
        set_={
            "paused_until": sa.case(
                (excluded.paused_until > _r.paused_until, excluded.paused_until),
                else_=_r.paused_until,
            ),
            "tat": sa.case((excluded.tat > _r.tat, excluded.tat), else_=_r.tat),
        },
    )


@dataclass(frozen=True)
class Slot:
    """What a caller asks of the limiter: a key, the spacing, and how long it may wait."""

    key: str
    interval: float
    max_wait: float


@dataclass(frozen=True)
class Decision:
    """A reservation decided under the key's row lock: the time then, the start it gets (None
    when beyond `max_wait`: nothing is reserved), the next free start either way, and whether
    the call may go at once (its start is now, no call in the last interval, no pause)."""

    now: float
    start: float | None
    next_free: float
    confirmed: bool


class RateLimiter:
    def __init__(self, db: Database) -> None:
        self.db = db

    def _row(self, conn: Conn, key: str) -> Any:
        """The key's row, locked for this transaction (created on first use)."""
        params = {"p_key": key}
        row = self.db.prepared(_LOCKED).first(conn, params)
        if row is None:
            values = {"key": key, "tat": 0.0, "paused_until": 0.0, "last_sent": 0.0}
            self.db.prepared(_create).run(conn, values)
            row = self.db.prepared(_LOCKED).rows(conn, params)[0]
        return row

    def decide_in(self, conn: Conn, slot: Slot) -> Decision:
        """Lock the key's row and decide a reservation, writing nothing (see `take_in`)."""
        rate = self._row(conn, slot.key)
        # Read the clock only once the row is ours, so waiting for the lock costs no slot.
        now = time.time()
        start = max(now, float(rate.tat), float(rate.paused_until))
        if start - now > slot.max_wait:
            return Decision(now, None, start, False)
        confirmed = start == now and float(rate.last_sent) + slot.interval <= now
        return Decision(now, start, start, confirmed)

    def take_in(self, conn: Conn, slot: Slot, decision: Decision) -> None:
        """Write what `decide_in` decided: the reservation, and the send when confirmed."""
        assert decision.start is not None
        tat = decision.start + slot.interval
        if decision.confirmed:
            params = {"p_key": slot.key, "p_tat": tat, "p_last_sent": decision.now}
            self.db.prepared(_TAKE).run(conn, params)
        else:
            self.db.prepared(_RESERVE).run(conn, {"p_key": slot.key, "p_tat": tat})

    def reserve(self, key: str, *, interval: float, max_wait: float) -> float | None:
        """Reserve the next call slot: its start (epoch seconds) to sleep until, or None,
        reserving nothing, when that is beyond `max_wait`. `confirm` at the start decides."""
        slot = Slot(key, interval, max_wait)
        with self.db.fast(write=True) as conn:
            decision = self.decide_in(conn, slot)
            if decision.start is not None:
                self.take_in(conn, slot, decision)
        return decision.start

    def confirm(
        self, key: str, *, interval: float, also: Callable[[Conn], None] | None = None
    ) -> float | None:
        """At a reserved start: go (None) if no call went out in the last `interval` and no
        pause holds, running `also` (e.g. marking the delivery sent) in the same transaction;
        else the epoch time to confirm again."""
        with self.db.fast(write=True) as conn:
            row = self._row(conn, key)
            now = time.time()
            earliest = max(float(row.last_sent) + interval, float(row.paused_until))
            if earliest > now:
                return earliest
            self.db.prepared(_SENT).run(conn, {"p_key": key, "p_last_sent": now})
            if also is not None:
                also(conn)
        return None

    def next_slot(self, key: str) -> float:
        """The start a reservation would get now (reserves nothing): for "retry at" hints."""
        with self.db.fast(write=False) as conn:
            row = self.db.prepared(_READ).first(conn, {"p_key": key})
        now = time.time()
        if row is None:
            return now
        return max(now, float(row.tat), float(row.paused_until))

    def pause_in(self, conn: Conn, key: str, until: float) -> None:
        params = {"key": key, "tat": until, "paused_until": until, "last_sent": 0.0}
        self.db.prepared(_pause).run(conn, params)

    def pause(self, key: str, *, until: float) -> None:
        """Hold every process's calls until `until` (epoch seconds), e.g. after a 429."""
        with self.db.fast(write=True) as conn:
            self.pause_in(conn, key, until)
