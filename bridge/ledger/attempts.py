"""The one attempt path of every delivery: `start` claims the row, settles an event already
known as canceled and takes the MeetBit rate slot, in one transaction, for a new row, a stored
row, a replay, or the worker's next due delivery; `complete` records what the call's answer
means, with the attempt's own row and what MeetBit's headers said. Locks are always taken
delivery row first, the limiter's row last (by the transaction's last statement), so the web
processes and the worker cannot deadlock on PostgreSQL and nothing waits on the limiter's row
longer than one statement and a commit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from bridge.core.delivery import (
    RETRYABLE,
    Completion,
    Delivery,
    NewDelivery,
    Start,
    Started,
)
from bridge.core.rate import Grant
from bridge.ledger.canceled import CanceledEvents
from bridge.ledger.database import Database, now
from bridge.ledger.deliveries import (
    RETURNED,
    Deliveries,
    by_id,
    claimable,
    lease_expired,
    new_row,
    not_final,
    now_param,
    one_of,
    param,
    to_delivery,
)
from bridge.ledger.prepared import Conn
from bridge.ledger.ratelimit import RateLimiter, Slot, SlotTaken
from bridge.ledger.requests import RequestRecord
from bridge.ledger.tables import attempts, deliveries

_d = deliveries.c
_INT4 = 2**31
# PostgreSQL: attempts of one event take turns (see `Attempts._start_in`).
_EVENT_LOCK = sa.select(
    sa.func.pg_advisory_xact_lock(
        sa.bindparam("p_a", type_=sa.Integer), sa.bindparam("p_b", type_=sa.Integer)
    ).label("locked")
)
# The rate slot an attempt of a delivery asks for (per MeetBit account).
SlotFor = Callable[[Delivery], Slot]


@dataclass(frozen=True)
class Confirmed:
    """What `Attempts.confirm` found at a slot's start: go, or the new slot taken (None: none
    in time)."""

    go: bool
    grant: Grant | None


# SKIP LOCKED lets concurrent workers take disjoint rows on PostgreSQL; on SQLite the clause
# compiles to nothing and BEGIN IMMEDIATE makes this the only writer.
_DUE = (
    sa.select(_d.id)
    .where(
        not_final(),
        sa.or_(
            sa.and_(
                one_of(_d.status, RETRYABLE),
                sa.or_(_d.next_attempt_at.is_(None), _d.next_attempt_at <= now_param),
            ),
            lease_expired(now_param),
        ),
    )
    .order_by(_d.created_at, _d.id)
    .limit(sa.literal_column("1"))
    .with_for_update(skip_locked=True)
)
_CLAIM = (
    sa.update(deliveries)
    .where(claimable)
    .values(
        status="in_flight",
        lease_until=param("p_lease_until", _d.lease_until),
        updated_at=now_param,
    )
    .returning(*RETURNED)
)
# Claimed and settled as `already_canceled` in one statement: no call is made.
_SETTLE = (
    sa.update(deliveries)
    .where(claimable)
    .values(
        status="succeeded",
        outcome="already_canceled",
        meetbit_status=None,
        error=None,
        last_error=None,
        next_attempt_at=None,
        lease_until=None,
        updated_at=now_param,
    )
    .returning(*RETURNED)
)
# Another delivery of the same event, claimed and its lease live: at most one call per event.
_EVENT_IN_FLIGHT = (
    sa.select(_d.id, _d.lease_until)
    .where(
        _d.calendar_id == param("p_calendar_id", _d.calendar_id),
        _d.event_id == param("p_event_id", _d.event_id),
        _d.id != param("p_id", _d.id),
        _d.status == "in_flight",
        _d.lease_until > now_param,
    )
    .limit(sa.literal_column("1"))
)
# No slot in time: left (or handed back) pending until the next free slot, nothing counted.
_DEFER = (
    sa.update(deliveries)
    .where(claimable)
    .values(
        status="pending",
        lease_until=None,
        next_attempt_at=param("p_next_attempt_at", _d.next_attempt_at),
        updated_at=now_param,
    )
    .returning(*RETURNED)
)
_RELEASE = (
    sa.update(deliveries)
    .where(by_id, _d.status == "in_flight")
    .values(
        status="pending",
        lease_until=None,
        next_attempt_at=param("p_next_attempt_at", _d.next_attempt_at),
        updated_at=now_param,
    )
)
_MARK_SENT = (
    sa.update(deliveries)
    .where(by_id)
    .values(attempts=_d.attempts + 1, sent=True, updated_at=now_param)
)
_COMPLETE = (
    sa.update(deliveries)
    .where(by_id)
    .values(
        status=param("p_status", _d.status),
        outcome=param("p_outcome", _d.outcome),
        meetbit_status=param("p_meetbit_status", _d.meetbit_status),
        error=param("p_error", _d.error),
        last_error=param("p_last_error", _d.last_error),
        next_attempt_at=param("p_next_attempt_at", _d.next_attempt_at),
        lease_until=None,
        updated_at=now_param,
        # The may-have-reached-MeetBit flag, unless the completion settles it.
        sent=sa.func.coalesce(param("p_sent", _d.sent), _d.sent),
    )
    .returning(*RETURNED)
)
_CANCELED = frozenset({"canceled", "already_canceled"})
# Every column but the id, which the database numbers.
_ATTEMPT = sa.insert(attempts).values(
    {c.name: sa.bindparam(c.name, type_=c.type) for c in attempts.c if c.name != "id"}
)


@dataclass(frozen=True)
class AttemptRecord:
    """One MeetBit call of a delivery, as its attempts row keeps it."""

    number: int
    process: str
    started_at: datetime
    finished_at: datetime
    sent: bool
    kind: str = "call"  # or `remap`: the stored request mapped again, no MeetBit call


def _dt(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


def _problem_text(problem: dict[str, Any] | None) -> str | None:
    """A stored problem as one line: its detail, then each field's messages."""
    if not problem:
        return None
    fields = problem.get("errors") or {}
    parts = [str(problem.get("detail") or "")]
    parts += [f"{name}: {'; '.join(map(str, msgs))}" for name, msgs in fields.items()]
    return " | ".join(p for p in parts if p) or None


def _always(slot: Slot) -> SlotFor:
    return lambda _delivery: slot


class Attempts:
    def __init__(
        self, db: Database, deliveries: Deliveries, rate: RateLimiter, canceled: CanceledEvents
    ) -> None:
        self.db = db
        self.deliveries = deliveries
        self.rate = rate
        self.canceled = canceled

    # -- the one attempt path -----------------------------------------------------------------

    def start(
        self,
        which: NewDelivery | str | None,
        *,
        lease: float,
        slot: Slot | SlotFor,
        request: RequestRecord | None = None,
    ) -> Started:
        """Start an attempt of `which`: a cancel to record (a stored one with the same key is
        taken instead), a stored delivery's id, or None for the next due delivery (worker).
        `slot` is the rate slot to ask for, or a function giving it for the delivery (each
        MeetBit account has its own limiter).

        One transaction: record the row if new, settle it if its event is known canceled, wait
        behind another delivery of the same event that is in flight, claim the row with a
        `lease` and take the rate slot (the row marked sent when the slot starts now); the
        slot is taken by the last statement, so the limiter's row is never held while the rest
        is done. See `Start` for the outcomes. `request`, the webhook a new cancel came from,
        is stored with it when the row is new.
        """
        slot_for = slot if callable(slot) else _always(slot)
        if isinstance(which, NewDelivery):
            if which.status != "pending" or which.calendar_id is None or which.event_id is None:
                raise ValueError("only a pending cancel with a target can be started")
            stored = self.deliveries.stored([which])
            if stored is not None:
                if stored[0].final:  # a duplicate of a finished delivery: nothing to write
                    return Started(Start.BUSY, stored[0])
                which = stored[0].id
        while True:
            try:
                return self._start_once(which, lease, slot_for, request)
            except SlotTaken:
                # Another process took a slot between this one's read and its take (PostgreSQL
                # only): everything was rolled back; start again from the rows as they are now.
                continue

    def _start_once(
        self,
        which: NewDelivery | str | None,
        lease: float,
        slot_for: SlotFor,
        request: RequestRecord | None,
    ) -> Started:
        with self.db.fast(write=True) as conn:
            created = False
            if which is None:
                found = self.db.prepared(_DUE).first(conn, {"p_now": now()})
                if found is None:
                    return Started(Start.NOTHING_DUE, None)
                which = found.id
            if isinstance(which, NewDelivery):
                current, created = self.deliveries.insert_in(conn, which, new_row(which, now()))
                if created and request is not None:
                    self.deliveries.requests.insert_in(conn, request)
            else:
                found_row = self.deliveries.get_in(conn, which)
                if found_row is None:
                    raise KeyError(which)
                current = found_row
            return replace(self._start_in(conn, current, lease, slot_for), created=created)

    def _start_in(self, conn: Conn, current: Delivery, lease: float, slot_for: SlotFor) -> Started:
        if current.final:
            return Started(Start.BUSY, current)
        assert current.calendar_id is not None and current.event_id is not None
        event = (current.calendar_id, current.event_id)
        # Settled without a rate slot when the event is already known canceled.
        settled = self._settle_if_canceled(conn, current, event)
        if settled is not None:
            return settled
        # Attempts of one event take turns (PostgreSQL: a lock on the event until commit;
        # SQLite: its one writer), so a delivery of the same event claimed by anyone is seen
        # here, and so is its result once recorded (the order of these two reads matters: its
        # result commits before its claim ends).
        self._lock_event_in(conn, event)
        at = now()
        other = self.db.prepared(_EVENT_IN_FLIGHT).first(
            conn,
            {"p_calendar_id": event[0], "p_event_id": event[1], "p_id": current.id, "p_now": at},
        )
        if other is not None:
            return self._defer(conn, current, at, other.lease_until, Start.EVENT_BUSY, other.id)
        settled = self._settle_if_canceled(conn, current, event)
        if settled is not None:
            return settled
        slot = slot_for(current)
        offer = self.rate.offer_in(conn, slot)
        at = datetime.fromtimestamp(offer.now, UTC)
        if offer.given is None:
            return self._defer(conn, current, at, _dt(offer.next_free), Start.NO_SLOT)
        params = {"p_id": current.id, "p_now": at, "p_lease_until": at + timedelta(seconds=lease)}
        row = self.db.prepared(_CLAIM).first(conn, params)
        if row is None:
            return Started(Start.BUSY, current)
        if offer.immediate:
            self._mark_sent_in(conn, current.id, at)
        # Last: the limiter's row is locked from here to the commit only.
        self.rate.take_in(conn, slot.key, offer)
        # As claimed, before this attempt counted: what earlier attempts did.
        claimed = to_delivery(row)
        kind = Start.CALL if offer.immediate else Start.WAIT
        return Started(kind, claimed, at=offer.given.at, grant=offer.given)

    def _lock_event_in(self, conn: Conn, event: tuple[int, int]) -> None:
        if self.db.dialect == "postgresql":
            # The two-key form: its key space is apart from the schema lock's one-key form.
            keys = {"p_a": event[0] % _INT4, "p_b": event[1] % _INT4}
            self.db.prepared(_EVENT_LOCK).rows(conn, keys)

    def _settle_if_canceled(
        self, conn: Conn, current: Delivery, event: tuple[int, int]
    ) -> Started | None:
        known = self.canceled.find_in(conn, *event)
        if known is None:
            return None
        params = {"p_id": current.id, "p_now": now()}
        row = self.db.prepared(_SETTLE).first(conn, params)
        if row is None:
            return Started(Start.BUSY, current)
        settled = replace(to_delivery(row), event=known.event)
        self.deliveries.write_backs.create_in(conn, settled)
        return Started(Start.SETTLED, settled)

    def _defer(
        self,
        conn: Conn,
        current: Delivery,
        at: datetime,
        until: datetime | None,
        kind: Start,
        waiting_for: str | None = None,
    ) -> Started:
        """Leave the delivery pending, not claimed, until `until`; nothing counted or sent."""
        params = {"p_id": current.id, "p_now": at, "p_next_attempt_at": until}
        row = self.db.prepared(_DEFER).first(conn, params)
        if row is None:
            return Started(Start.BUSY, current)
        epoch = None if until is None else until.timestamp()
        return Started(kind, to_delivery(row), at=epoch, waiting_for=waiting_for)

    def confirm(
        self, delivery_id: str, slot: Slot, given: Grant, *, mark_sent: bool = True
    ) -> Confirmed:
        """At a slot's start (`Start.WAIT`): go when no hold written since covers it and the
        budget still has it (the delivery then marked sent in the same transaction, unless
        `mark_sent` is False: it already is); else a new slot is taken (`Confirmed.grant`,
        None when none starts within `slot.max_wait`)."""
        while True:
            try:
                with self.db.fast(write=True) as conn:
                    if self.rate.check_in(conn, slot, given):
                        if mark_sent:
                            self._mark_sent_in(conn, delivery_id, now())
                        return Confirmed(go=True, grant=given)
                    offer = self.rate.offer_in(conn, slot)
                    if offer.given is not None:
                        self.rate.take_in(conn, slot.key, offer)
                    return Confirmed(go=False, grant=offer.given)
            except SlotTaken:
                continue

    def reslot(self, slot: Slot) -> Grant | None:
        """A new slot for a call that missed its own (`Grant.send_by` passed before it was
        sent): None when none starts within `slot.max_wait`."""
        return self.rate.take(slot)

    def _mark_sent_in(self, conn: Conn, delivery_id: str, at: datetime) -> None:
        """Count an attempt and note that it may reach MeetBit: right before the call."""
        touched = self.db.prepared(_MARK_SENT).run(conn, {"p_id": delivery_id, "p_now": at})
        if touched != 1:
            raise KeyError(delivery_id)

    def release(self, delivery_id: str, *, next_attempt_at: float | None = None) -> None:
        """Give an in-flight delivery back without counting an attempt (no call was made)."""
        params = {"p_id": delivery_id, "p_now": now(), "p_next_attempt_at": _dt(next_attempt_at)}
        with self.db.fast(write=True) as conn:
            self.db.prepared(_RELEASE).run(conn, params)

    # -- completing ---------------------------------------------------------------------------

    def complete(
        self,
        delivery_id: str,
        completion: Completion,
        *,
        attempt: AttemptRecord | None = None,
        rate_key: str | None = None,
        heard: float | None = None,
        hold_until: float | None = None,
    ) -> Delivery:
        """Store an attempt's result and release the lease, in one transaction: with the
        attempt's own row, the event recorded as canceled, and for `rate_key`'s limiter the
        limit MeetBit's headers gave (`heard`, calls per second) and a hold of every call
        until the completion's pause (a 429) or `hold_until` (`RateLimit-Remaining: 0`)."""
        params: dict[str, Any] = {
            "p_id": delivery_id,
            "p_status": str(completion.status),
            "p_outcome": completion.outcome,
            "p_meetbit_status": completion.meetbit_status,
            "p_error": completion.error,
            "p_last_error": completion.last_error,
            "p_next_attempt_at": _dt(completion.next_attempt_at),
            "p_sent": completion.sent,
            "p_now": now(),
        }
        with self.db.fast(write=True) as conn:
            row = self.db.prepared(_COMPLETE).first(conn, params)
            if row is None:
                raise KeyError(delivery_id)
            done = to_delivery(row)
            # The event is kept only on its canceled row (stored once): a completion that
            # carries one records the event canceled, which its canceled outcome says it is.
            carries_event = completion.event is not None and completion.outcome in _CANCELED
            if completion.canceled or carries_event:
                if done.calendar_id is None or done.event_id is None:
                    raise ValueError("a delivery without a target cannot cancel an event")
                event = completion.event
                self.canceled.mark_in(conn, done.calendar_id, done.event_id, "bridge", event)
                if event is None:  # settled by a 404: the event as the ledger has it, if any
                    known = self.canceled.find_in(conn, done.calendar_id, done.event_id)
                    event = None if known is None else known.event
                done = replace(done, event=event)
            if attempt is not None:
                self._attempt_in(conn, delivery_id, completion, attempt)
            if done.final:
                # The outcome and its write-back jobs commit together, or neither does.
                self.deliveries.write_backs.create_in(conn, done)
            if rate_key is not None:
                # Last, as in `start`: the limiter's row is locked from here to the commit only.
                if heard is not None:
                    self.rate.heard_in(conn, rate_key, heard)
                if completion.pause_until is not None:
                    self.rate.hold_in(conn, rate_key, max(completion.pause_until, hold_until or 0))
                elif hold_until is not None:
                    self.rate.extend_in(conn, rate_key, hold_until)
        return done

    def _attempt_in(
        self, conn: Conn, delivery_id: str, completion: Completion, attempt: AttemptRecord
    ) -> None:
        values = {
            "delivery_id": delivery_id,
            "number": attempt.number,
            "process": attempt.process,
            "started_at": attempt.started_at,
            "finished_at": attempt.finished_at,
            "sent": attempt.sent,
            "meetbit_status": completion.meetbit_status,
            "outcome": completion.outcome or str(completion.status),
            "error_kind": completion.error_kind,
            "error": completion.last_error,
            "kind": attempt.kind,
        }
        self.db.prepared(_ATTEMPT).run(conn, values)

    def remap(
        self, delivery_id: str, mapped: NewDelivery, *, attempt: AttemptRecord
    ) -> Delivery | None:
        """A mapping error's delivery mapped again from its stored request: take `mapped`'s
        state (a cancel to make, pending with a fresh attempt and age budget; `ignored`; or a
        mapping error again) with the remap's own attempt row, in one transaction. None when
        the delivery is no longer a mapping error (another replay got there first)."""
        at = now()
        pending = mapped.status == "pending"
        detail = None if mapped.error is None else mapped.error.get("detail")
        # What the timeline shows of it: mapped, ignored again, or the mapping error again.
        word: str | None
        kind: str | None
        text: str | None
        if pending:
            word, kind, text = "mapped", None, None
        elif mapped.outcome == "mapping_error":
            word, kind, text = "mapping_error", "mapping_error", _problem_text(mapped.error)
        else:
            word, kind, text = mapped.outcome, None, (mapped.error or {}).get("reason")
        with self.db.write() as conn:
            touched = conn.execute(
                sa.update(deliveries)
                .where(_d.id == delivery_id, _d.status == "failed", _d.outcome == "mapping_error")
                .values(
                    calendar_id=mapped.calendar_id,
                    event_id=mapped.event_id,
                    note=mapped.note,
                    status=mapped.status,
                    outcome=mapped.outcome,
                    error=mapped.error,
                    last_error=detail,
                    attempts=0,
                    max_attempts=mapped.max_attempts,
                    max_age=mapped.max_age,
                    expires_at=at + timedelta(seconds=mapped.max_age),
                    next_attempt_at=at if pending else None,
                    lease_until=None,
                    sent=False,
                    updated_at=at,
                )
            ).rowcount
            if not touched:
                return None
            conn.execute(
                sa.insert(attempts).values(
                    delivery_id=delivery_id,
                    number=attempt.number,
                    process=attempt.process,
                    started_at=attempt.started_at,
                    finished_at=attempt.finished_at,
                    sent=False,
                    meetbit_status=None,
                    outcome=word,
                    error_kind=kind,
                    error=text,
                    kind="remap",
                )
            )
            return self.deliveries.get_in(conn, delivery_id)

    def history(self, delivery_id: str) -> list[dict[str, Any]]:
        """The delivery's attempts, oldest first."""
        a = attempts.c
        query = sa.select(attempts).where(a.delivery_id == delivery_id).order_by(a.id)
        with self.db.read() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]
