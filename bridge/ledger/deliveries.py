"""Deliveries: recorded once per cancel command, found again by their idempotency key.

The attempts of a delivery (claiming, the rate slot, the call's result) are `attempts.py`.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from bridge.core.delivery import FINAL_OUTCOMES, RETRYABLE, Delivery, NewDelivery
from bridge.ledger.database import Database, Insert, now
from bridge.ledger.prepared import Conn
from bridge.ledger.requests import RequestRecord, Requests
from bridge.ledger.tables import canceled_events, deliveries
from bridge.ledger.writebacks import WriteBacks

_d = deliveries.c
_c = canceled_events.c
# A canceled delivery's MeetBit event is stored once, on its event's `canceled_events` row
# (one primary-key lookup; retention keeps that row while a delivery names it).
EVENT = (
    sa.select(_c.event)
    .where(
        _c.calendar_id == _d.calendar_id,
        _c.event_id == _d.event_id,
        _d.outcome.in_([sa.literal_column("'canceled'"), sa.literal_column("'already_canceled'")]),
    )
    .correlate(deliveries)
    .scalar_subquery()
    .label("event")
)
# The delivery columns in the dataclass's field order, so a row converts positionally.
COLUMNS = tuple(EVENT if name == "event" else _d[name] for name in Delivery.__dataclass_fields__)
# The same for RETURNING, which renders columns unqualified and so cannot correlate: the
# event is NULL there, and the writer that settles or completes a delivery puts it in.
RETURNED = tuple(
    sa.null().label("event") if name == "event" else _d[name]
    for name in Delivery.__dataclass_fields__
)


def new_delivery_id() -> str:
    """`dlv_` + 128 random bits, URL-safe: unguessable, so safe to show to senders."""
    return "dlv_" + secrets.token_urlsafe(16)


def to_delivery(row: Sequence[Any]) -> Delivery:
    """A row selected as `COLUMNS` or returned as `RETURNED`: by position, the cheap way."""
    return Delivery(*row)


def one_of(column: sa.Column[str], values: Sequence[str]) -> sa.ColumnElement[bool]:
    """`column IN ('a', 'b')` with the constants written into the SQL: a bound list would be
    an expanding parameter, which a `Prepared` statement cannot take."""
    assert all(v.isidentifier() for v in values)
    return column.in_([sa.literal_column(f"'{v}'") for v in values])


def not_final() -> sa.ColumnElement[bool]:
    return sa.and_(
        _d.status != "dead",
        sa.or_(_d.outcome.is_(None), sa.not_(one_of(_d.outcome, sorted(FINAL_OUTCOMES)))),
    )


def lease_expired(at: datetime | sa.BindParameter[Any]) -> sa.ColumnElement[bool]:
    return sa.and_(_d.status == "in_flight", sa.or_(_d.lease_until.is_(None), _d.lease_until <= at))


def param(name: str, column: sa.Column[Any]) -> sa.BindParameter[Any]:
    return sa.bindparam(name, type_=column.type)


now_param = param("p_now", _d.updated_at)
by_id = _d.id == param("p_id", _d.id)
claimable = sa.and_(
    by_id, not_final(), sa.or_(one_of(_d.status, RETRYABLE), lease_expired(now_param))
)

_GET = sa.select(*COLUMNS).where(by_id)
_FIND = (
    sa.select(*COLUMNS)
    .where(
        _d.route == param("p_route", _d.route),
        _d.idempotency_key == param("p_key", _d.idempotency_key),
    )
    .order_by(_d.seq)
)
_STORED = sa.select(*COLUMNS).where(
    _d.route == param("p_route", _d.route),
    _d.idempotency_key == param("p_key", _d.idempotency_key),
    _d.seq == param("p_seq", _d.seq),
)


def insert(insert: Any) -> sa.ClauseElement:
    # Values come from the parameters (every column); a conflict returns no row.
    stmt: Insert = insert(deliveries)
    return stmt.on_conflict_do_nothing(
        index_elements=["route", "idempotency_key", "seq"]
    ).returning(*RETURNED)


def new_row(item: NewDelivery, at: datetime) -> dict[str, Any]:
    """Every column of a freshly recorded delivery."""
    return {
        "id": new_delivery_id(),
        "route": item.route,
        "idempotency_key": item.idempotency_key,
        "seq": item.seq,
        "calendar_id": item.calendar_id,
        "event_id": item.event_id,
        "note": item.note,
        "status": item.status,
        "outcome": item.outcome,
        "attempts": 0,
        "max_attempts": item.max_attempts,
        "max_age": item.max_age,
        "created_at": at,
        "updated_at": at,
        "expires_at": at + timedelta(seconds=item.max_age),
        "next_attempt_at": None,
        "lease_until": None,
        "last_error": None,
        "meetbit_status": None,
        "error": item.error,
        "sent": False,
        "request_id": item.request_id,
        "x_request_id": item.x_request_id,
        "traceparent": item.traceparent,
    }


class Deliveries:
    def __init__(
        self, db: Database, requests: Requests, write_backs: WriteBacks | None = None
    ) -> None:
        self.db = db
        self.requests = requests
        self.write_backs = write_backs or WriteBacks(db)

    # -- reading ------------------------------------------------------------------------------

    def get_in(self, conn: Conn, delivery_id: str) -> Delivery | None:
        row = self.db.prepared(_GET).first(conn, {"p_id": delivery_id})
        return None if row is None else to_delivery(row)

    def get(self, delivery_id: str) -> Delivery | None:
        with self.db.fast(write=False) as conn:
            return self.get_in(conn, delivery_id)

    def find(self, route: str, idempotency_key: str) -> list[Delivery]:
        with self.db.fast(write=False) as conn:
            rows = self.db.prepared(_FIND).rows(conn, {"p_route": route, "p_key": idempotency_key})
        return [to_delivery(r) for r in rows]

    def stored(self, items: Sequence[NewDelivery]) -> list[Delivery] | None:
        """Every item's stored row, in order, or None if any is not stored yet."""
        found: dict[tuple[str, str, int], Delivery] = {}
        for pair in dict.fromkeys((i.route, i.idempotency_key) for i in items):
            for d in self.find(*pair):
                found[(d.route, d.idempotency_key, d.seq)] = d
        try:
            return [found[(i.route, i.idempotency_key, i.seq)] for i in items]
        except KeyError:
            return None

    # -- recording ----------------------------------------------------------------------------

    def record(
        self, items: Sequence[NewDelivery], *, request: RequestRecord | None = None
    ) -> list[tuple[Delivery, bool]]:
        """Store every item in one transaction; an item whose (route, key, seq) is already
        stored returns the stored row with `created=False`. `request`, the webhook the items
        came from, is stored with them when any of them is new."""
        if not items:
            return []
        # A duplicate webhook finds everything stored: answer it from a read transaction,
        # which on SQLite runs beside the single writer instead of queueing for it.
        stored = self.stored(items)
        if stored is not None:
            return [(d, False) for d in stored]
        at = now()
        with self.db.fast(write=True) as conn:
            done = [self.insert_in(conn, item, new_row(item, at)) for item in items]
            if request is not None and any(created for _, created in done):
                self.requests.insert_in(conn, request)
            return done

    def insert_in(
        self, conn: Conn, item: NewDelivery, values: dict[str, Any]
    ) -> tuple[Delivery, bool]:
        # A concurrent identical call waits for ours (PG) or for the write lock (SQLite); its
        # insert then returns nothing and it reads the row we stored.
        row = self.db.prepared(insert).first(conn, values)
        if row is not None:
            if item.write_back is not None:
                # With the row, in its transaction: the plan is there when the outcome is.
                self.write_backs.plan_in(conn, values["id"], item.write_back)
            return to_delivery(row), True
        params = {"p_route": item.route, "p_key": item.idempotency_key, "p_seq": item.seq}
        return to_delivery(self.db.prepared(_STORED).rows(conn, params)[0]), False

    # -- replay -------------------------------------------------------------------------------

    def replay(self, delivery_id: str) -> Delivery | None:
        """Queue a failed or dead delivery again with a fresh attempt and age budget.

        Anything else (successes, pending, in flight) and failures without a MeetBit target
        (mapping errors) are returned unchanged; None if the id is unknown.
        """
        at = now()
        with self.db.write() as conn:
            row = conn.execute(
                sa.select(_d.status, _d.calendar_id, _d.event_id, _d.max_age).where(
                    _d.id == delivery_id
                )
            ).first()
            if row is None:
                return None
            replayable = row.status in ("failed", "dead") and row.calendar_id is not None
            if replayable and row.event_id is not None:
                conn.execute(
                    sa.update(deliveries)
                    .where(_d.id == delivery_id)
                    .values(
                        status="pending",
                        outcome=None,
                        error=None,
                        attempts=0,
                        next_attempt_at=at,
                        lease_until=None,
                        expires_at=at + timedelta(seconds=row.max_age),
                        updated_at=at,
                    )
                )
            return self.get_in(conn, delivery_id)
