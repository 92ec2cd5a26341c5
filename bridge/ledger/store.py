"""The Ledger: the durable record and queue of deliveries, shared by every process of every
bridge instance, plus the shared MeetBit rate-limit state, links, canceled events, MeetBit
webhook receipts and worker heartbeats."""

from __future__ import annotations

import base64
import binascii
import builtins
import json
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.pool import PoolProxiedConnection

from bridge.errors import LedgerUnavailable
from bridge.ledger.db import READ_ONLY, WalCheckpointer, is_sqlite_file, make_engine, normalize_url
from bridge.ledger.prepared import Conn, Prepared, transaction
from bridge.ledger.tables import (
    FINAL_OUTCOMES,
    STATUSES,
    canceled_events,
    deliveries,
    links,
    rate_limits,
    webhook_receipts,
    workers,
)

__all__ = [
    "FINAL_OUTCOMES",
    "STATUSES",
    "AttemptStart",
    "CanceledRecord",
    "Delivery",
    "Ledger",
    "Link",
    "NewDelivery",
    "new_delivery_id",
]

# Any constant will do; it only has to be the same in every process that migrates this schema.
_SCHEMA_LOCK_KEY = 0x6D62_6272_6964_6765  # "mbbridge"
_FINAL_LIST = sorted(FINAL_OUTCOMES)
_RETRYABLE = ("pending", "failed")


def new_delivery_id() -> str:
    """`dlv_` + 128 random bits, URL-safe: unguessable, so safe to show to senders."""
    return "dlv_" + secrets.token_urlsafe(16)


def _now() -> datetime:
    # Wall-clock time: hosts sharing one PostgreSQL ledger are assumed to be NTP-synced.
    return datetime.now(UTC)


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware")
    return value


@dataclass(frozen=True)
class NewDelivery:
    """One cancel command to record; items decided at mapping time carry their final state."""

    route: str
    idempotency_key: str
    seq: int = 0
    calendar_id: int | None = None
    event_id: int | None = None
    note: str | None = None
    status: str = "pending"
    outcome: str | None = None
    error: dict[str, Any] | None = None
    max_attempts: int = 10
    max_age: float = 86400.0


@dataclass(frozen=True)
class Delivery:
    id: str
    route: str
    idempotency_key: str
    seq: int
    calendar_id: int | None
    event_id: int | None
    note: str | None
    status: str
    outcome: str | None
    attempts: int
    max_attempts: int
    created_at: datetime
    updated_at: datetime
    expires_at: datetime
    next_attempt_at: datetime | None
    lease_until: datetime | None
    last_error: str | None
    meetbit_status: int | None
    event: dict[str, Any] | None
    error: dict[str, Any] | None
    sent: bool

    @property
    def final(self) -> bool:
        """True once no further MeetBit call will be made for this delivery."""
        return self.outcome in FINAL_OUTCOMES or self.status == "dead"


@dataclass(frozen=True)
class CanceledRecord:
    calendar_id: int
    event_id: int
    source: str
    event: dict[str, Any] | None
    canceled_at: datetime


@dataclass(frozen=True)
class Link:
    key: str
    calendar_id: int
    event_id: int
    created_at: datetime


@dataclass(frozen=True)
class AttemptStart:
    """What `start_attempt` did in its one transaction.

    `delivery` is the row as claimed, before this attempt counted (its `sent` and `attempts`
    say what earlier attempts did), or as settled when `settled`. `start` is the reserved
    rate slot (None: nothing claimed, settled, or no slot within `max_wait`, nothing
    reserved); `confirmed` means the slot is confirmed and the delivery marked sent: call now.
    """

    delivery: Delivery | None
    settled: bool = False
    start: float | None = None
    confirmed: bool = False


_DELIVERY_FIELDS = tuple(Delivery.__dataclass_fields__)
# The delivery columns in the dataclass's field order, so a row converts positionally.
_DELIVERY_COLUMNS = tuple(deliveries.c[name] for name in _DELIVERY_FIELDS)


def _delivery(row: Sequence[Any]) -> Delivery:
    """A row selected or returned as `_DELIVERY_COLUMNS`: by position, the cheap way."""
    return Delivery(*row)


def _link(row: Any) -> Link:
    return Link(
        key=row.key, calendar_id=row.calendar_id, event_id=row.event_id, created_at=row.created_at
    )


def _new_row(item: NewDelivery, now: datetime) -> dict[str, Any]:
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
        "created_at": now,
        "updated_at": now,
        "expires_at": now + timedelta(seconds=item.max_age),
        "next_attempt_at": None,
        "lease_until": None,
        "last_error": None,
        "meetbit_status": None,
        "event": None,
        "error": item.error,
        "sent": False,
    }


def _one_of(column: sa.Column[str], values: Sequence[str]) -> sa.ColumnElement[bool]:
    """`column IN ('a', 'b')` with the constants written into the SQL: a bound list would be
    an expanding parameter, which a `Prepared` statement cannot take."""
    assert all(v.isidentifier() for v in values)
    return column.in_([sa.literal_column(f"'{v}'") for v in values])


def _not_final() -> sa.ColumnElement[bool]:
    d = deliveries.c
    return sa.and_(
        d.status != "dead", sa.or_(d.outcome.is_(None), sa.not_(_one_of(d.outcome, _FINAL_LIST)))
    )


def _lease_expired(now: datetime | sa.BindParameter[Any]) -> sa.ColumnElement[bool]:
    d = deliveries.c
    return sa.and_(d.status == "in_flight", sa.or_(d.lease_until.is_(None), d.lease_until <= now))


def _encode_cursor(values: list[Any]) -> str:
    raw = json.dumps(values, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, types: Sequence[type]) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise ValueError("invalid cursor") from exc
    if (
        not isinstance(values, list)
        or len(values) != len(types)
        # bool is an int subclass; a cursor never holds one.
        or not all(type(v) is t for v, t in zip(values, types, strict=True))
    ):
        raise ValueError("invalid cursor")
    return values


def _cursor_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError("invalid cursor") from exc
    if value.tzinfo is None:
        raise ValueError("invalid cursor")
    return value


def _param(name: str, column: sa.Column[Any]) -> sa.BindParameter[Any]:
    return sa.bindparam(name, type_=column.type)


class _Statements:
    """The statements of the hot paths, built and compiled once per ledger with bound
    parameters and run as `Prepared` statements (see prepared.py)."""

    def __init__(
        self, dialect: Dialect, insert: Callable[[sa.Table], postgresql.Insert | sqlite.Insert]
    ) -> None:
        def prepare(statement: sa.ClauseElement) -> Prepared:
            return Prepared(statement, dialect)

        d = deliveries.c
        cols = _DELIVERY_COLUMNS
        now = _param("p_now", d.updated_at)
        by_id = d.id == _param("p_id", d.id)

        self.get = prepare(sa.select(*cols).where(by_id))
        self.find = prepare(
            sa.select(*cols)
            .where(
                d.route == _param("p_route", d.route),
                d.idempotency_key == _param("p_key", d.idempotency_key),
            )
            .order_by(d.seq)
        )
        # Values come from the parameters (every column); a conflict returns no row.
        self.insert = prepare(
            insert(deliveries)
            .on_conflict_do_nothing(index_elements=["route", "idempotency_key", "seq"])
            .returning(*cols)
        )
        self.stored = prepare(
            sa.select(*cols).where(
                d.route == _param("p_route", d.route),
                d.idempotency_key == _param("p_key", d.idempotency_key),
                d.seq == _param("p_seq", d.seq),
            )
        )

        claimable = sa.and_(
            by_id, _not_final(), sa.or_(_one_of(d.status, _RETRYABLE), _lease_expired(now))
        )
        self.claim = prepare(
            sa.update(deliveries)
            .where(claimable)
            .values(
                status="in_flight",
                lease_until=_param("p_lease_until", d.lease_until),
                updated_at=now,
            )
            .returning(*cols)
        )
        # A claim and its completion as `already_canceled` in one statement: no call is made.
        self.settle_canceled = prepare(
            sa.update(deliveries)
            .where(claimable)
            .values(
                status="succeeded",
                outcome="already_canceled",
                meetbit_status=None,
                event=_param("p_event", d.event),
                error=None,
                last_error=None,
                next_attempt_at=None,
                lease_until=None,
                updated_at=now,
            )
            .returning(*cols)
        )
        self.mark_sent = prepare(
            sa.update(deliveries)
            .where(by_id)
            .values(attempts=d.attempts + 1, sent=True, updated_at=now)
        )
        completion = {
            "status": _param("p_status", d.status),
            "outcome": _param("p_outcome", d.outcome),
            "meetbit_status": _param("p_meetbit_status", d.meetbit_status),
            "event": _param("p_event", d.event),
            "error": _param("p_error", d.error),
            "last_error": _param("p_last_error", d.last_error),
            "next_attempt_at": _param("p_next_attempt_at", d.next_attempt_at),
            "lease_until": None,
            "updated_at": now,
        }
        complete = sa.update(deliveries).where(by_id)
        self.complete = prepare(complete.values(**completion).returning(*cols))
        self.complete_sent = prepare(
            complete.values(**completion, sent=_param("p_sent", d.sent)).returning(*cols)
        )

        c = canceled_events.c
        self.canceled = prepare(
            sa.select(canceled_events).where(
                c.calendar_id == _param("p_calendar_id", c.calendar_id),
                c.event_id == _param("p_event_id", c.event_id),
            )
        )
        upsert = insert(canceled_events)
        self.canceled_upsert = prepare(
            upsert.on_conflict_do_update(
                index_elements=["calendar_id", "event_id"],
                set_={"event": sa.func.coalesce(upsert.excluded.event, c.event)},
            )
        )

        r = rate_limits.c
        by_key = r.key == _param("p_key", r.key)
        self.rate_row = prepare(sa.select(rate_limits).where(by_key).with_for_update())
        self.rate_read = prepare(sa.select(rate_limits).where(by_key))
        self.rate_create = prepare(
            insert(rate_limits).on_conflict_do_nothing(index_elements=["key"])
        )
        self.rate_reserve = prepare(
            sa.update(rate_limits).where(by_key).values(tat=_param("p_tat", r.tat))
        )
        self.rate_sent = prepare(
            sa.update(rate_limits)
            .where(by_key)
            .values(last_sent=_param("p_last_sent", r.last_sent))
        )
        self.rate_take = prepare(
            sa.update(rate_limits)
            .where(by_key)
            .values(tat=_param("p_tat", r.tat), last_sent=_param("p_last_sent", r.last_sent))
        )

        lk = links.c
        self.links = prepare(
            sa.select(links)
            .where(lk.key == _param("p_key", lk.key))
            .order_by(lk.created_at, lk.calendar_id, lk.event_id)
        )
        w = workers.c
        self.workers_alive = prepare(
            sa.select(sa.func.count().label("alive"))
            .select_from(workers)
            .where(w.seen_at >= _param("p_cutoff", w.seen_at))
        )


class Ledger:
    """Every read and write of the ledger database. Safe to share between threads; each
    process (and each bridge instance) builds its own and they coordinate through the database.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine = make_engine(url)
        self._dialect = self._engine.dialect.name
        self._checkpointer = WalCheckpointer(self._engine) if is_sqlite_file(self._engine) else None
        self._statements: _Statements | None = None

    def __repr__(self) -> str:
        masked = sa.make_url(normalize_url(self.url)).render_as_string(hide_password=True)
        return f"Ledger({masked!r})"

    # -- plumbing -------------------------------------------------------------------------

    @contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            raise LedgerUnavailable() from exc
        except sa.exc.TimeoutError as exc:  # the connection pool is exhausted
            raise LedgerUnavailable() from exc
        except sa.exc.IntegrityError as exc:
            raise ValueError(f"the ledger rejected the values: {exc.orig}") from exc
        except sa.exc.DBAPIError as exc:
            if exc.connection_invalidated:
                raise LedgerUnavailable() from exc
            raise

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction (BEGIN IMMEDIATE on SQLite: the single writer)."""
        with self._translate(), self._engine.begin() as conn:
            yield conn
        self._written()

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._translate(), self._engine.connect() as conn:
            conn.execution_options(**{READ_ONLY: True})
            with conn.begin():
                yield conn

    @contextmanager
    def _fast(self, *, write: bool) -> Iterator[PoolProxiedConnection]:
        """`_write` or `_read` on the pooled driver connection, for the hot paths that run
        only `Prepared` statements (see prepared.py)."""
        with self._translate(), transaction(self._engine, write=write) as conn:
            yield conn
        if write:
            self._written()

    def _written(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.written()

    @property
    def _q(self) -> _Statements:
        # Built on first use, so that constructing a ledger stays free of work and errors.
        if self._statements is None:
            self._statements = _Statements(self._engine.dialect, self._insert)
        return self._statements

    def _insert(self, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
        if self._dialect == "postgresql":
            return postgresql.insert(table)
        if self._dialect == "sqlite":
            return sqlite.insert(table)
        raise RuntimeError(f"unsupported ledger database: {self._dialect}")

    # -- schema and lifecycle -------------------------------------------------------------

    def upgrade(self) -> None:
        """Migrate the schema to the newest revision (a no-op when it is already there)."""
        from bridge.ledger import migrate  # Alembic is only needed here; it is slow to import

        with self._write() as conn:
            if self._dialect == "postgresql":
                # Serialise migrators across processes and hosts; released at commit.
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_SCHEMA_LOCK_KEY)))
            # Checked under the lock: another process may have just migrated.
            if migrate.current_revisions(conn) != migrate.head_revisions():
                migrate.upgrade_on(conn)

    def ensure_schema(self) -> None:
        """Upgrade if the schema is missing or behind; cheap when it is current."""
        from bridge.ledger import migrate

        with self._read() as conn:
            current = migrate.current_revisions(conn)
        if current != migrate.head_revisions():
            self.upgrade()

    def ping(self) -> None:
        with self._read() as conn:
            conn.execute(sa.text("SELECT 1"))

    def dispose(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
        self._engine.dispose()

    # -- deliveries -----------------------------------------------------------------------

    def _fetch(self, conn: Conn, delivery_id: str) -> Delivery | None:
        row = self._q.get.first(conn, {"p_id": delivery_id})
        return None if row is None else _delivery(row)

    def record(self, items: Sequence[NewDelivery]) -> list[tuple[Delivery, bool]]:
        """Store every item in one transaction; an item whose (route, key, seq) is already
        stored returns the stored row with `created=False`."""
        if not items:
            return []
        # A duplicate webhook finds everything stored: answer it from a read transaction,
        # which on SQLite runs beside the single writer instead of queueing for it.
        stored = self._stored(items)
        if stored is not None:
            return [(d, False) for d in stored]
        now = _now()
        with self._fast(write=True) as conn:
            return [self._insert_new(conn, item, _new_row(item, now)) for item in items]

    def record_and_start(
        self, item: NewDelivery, *, lease: float, key: str, interval: float, max_wait: float
    ) -> tuple[Delivery, bool, AttemptStart | None]:
        """`record` for one pending cancel and, when it is new, `start_attempt` in the same
        transaction: the row is stored already claimed (or settled as `already_canceled`).

        Returns the delivery, whether it was created, and for a created one what
        `start_attempt` would have returned; a stored one is returned as it is, untouched.
        """
        if item.status != "pending" or item.calendar_id is None or item.event_id is None:
            raise ValueError("only a pending cancel with a target can be started")
        stored = self._stored([item])
        if stored is not None:
            return stored[0], False, None
        q = self._q
        with self._fast(write=True) as conn:
            known = q.canceled.first(
                conn, {"p_calendar_id": item.calendar_id, "p_event_id": item.event_id}
            )
            if known is not None:
                values = _new_row(item, _now())
                values.update(status="succeeded", outcome="already_canceled", event=known.event)
                d, created = self._insert_new(conn, item, values)
                return d, created, AttemptStart(d, settled=True) if created else None
            now, start, confirmed = self._slot(conn, key, interval, max_wait)
            now_dt = datetime.fromtimestamp(now, UTC)
            values = _new_row(item, now_dt)
            values.update(status="in_flight", lease_until=now_dt + timedelta(seconds=lease))
            if confirmed:
                values.update(attempts=1, sent=True)
            d, created = self._insert_new(conn, item, values)
            if not created:
                return d, False, None
            if start is not None:
                self._take_slot(conn, key, interval, now, start, confirmed=confirmed)
        # As `start_attempt` returns it: claimed, before this attempt counted.
        claimed = replace(d, attempts=0, sent=False)
        return claimed, True, AttemptStart(claimed, start=start, confirmed=confirmed)

    def _insert_new(
        self, conn: Conn, item: NewDelivery, values: dict[str, Any]
    ) -> tuple[Delivery, bool]:
        # A concurrent identical call waits for ours (PG) or for the write lock (SQLite); its
        # insert then returns nothing and it reads the row we stored.
        row = self._q.insert.first(conn, values)
        if row is not None:
            return _delivery(row), True
        params = {"p_route": item.route, "p_key": item.idempotency_key, "p_seq": item.seq}
        return _delivery(self._q.stored.rows(conn, params)[0]), False

    def _stored(self, items: Sequence[NewDelivery]) -> list[Delivery] | None:
        """Every item's stored row, in order, or None if any is not stored yet."""
        found: dict[tuple[str, str, int], Delivery] = {}
        with self._fast(write=False) as conn:
            for pair in dict.fromkeys((i.route, i.idempotency_key) for i in items):
                params = {"p_route": pair[0], "p_key": pair[1]}
                for row in self._q.find.rows(conn, params):
                    d = _delivery(row)
                    found[(d.route, d.idempotency_key, d.seq)] = d
        try:
            return [found[(i.route, i.idempotency_key, i.seq)] for i in items]
        except KeyError:
            return None

    def get(self, delivery_id: str) -> Delivery | None:
        with self._fast(write=False) as conn:
            return self._fetch(conn, delivery_id)

    def find(self, route: str, idempotency_key: str) -> list[Delivery]:
        with self._fast(write=False) as conn:
            rows = self._q.find.rows(conn, {"p_route": route, "p_key": idempotency_key})
        return [_delivery(r) for r in rows]

    def claim(self, delivery_id: str, *, lease: float) -> Delivery | None:
        """Take the delivery for one attempt, or None if it is final or someone holds it."""
        now = _now()
        with self._fast(write=True) as conn:
            row = self._q.claim.first(
                conn,
                {
                    "p_id": delivery_id,
                    "p_now": now,
                    "p_lease_until": now + timedelta(seconds=lease),
                },
            )
        return None if row is None else _delivery(row)

    def start_attempt(
        self, delivery: Delivery, *, lease: float, key: str, interval: float, max_wait: float
    ) -> AttemptStart:
        """`claim`, the `canceled_event` check, `reserve_slot` and, when the slot starts now,
        `confirm_slot` with the delivery marked sent: all in one transaction.

        An event already known as canceled settles the delivery as `already_canceled` (no
        call, no slot); no slot within `max_wait` leaves it claimed with nothing reserved.
        """
        assert delivery.calendar_id is not None and delivery.event_id is not None
        q = self._q
        with self._fast(write=True) as conn:
            known = q.canceled.first(
                conn, {"p_calendar_id": delivery.calendar_id, "p_event_id": delivery.event_id}
            )
            if known is not None:
                row = q.settle_canceled.first(
                    conn, {"p_id": delivery.id, "p_now": _now(), "p_event": known.event}
                )
                if row is None:
                    return AttemptStart(None)
                return AttemptStart(_delivery(row), settled=True)
            now, start, confirmed = self._slot(conn, key, interval, max_wait)
            now_dt = datetime.fromtimestamp(now, UTC)
            row = q.claim.first(
                conn,
                {
                    "p_id": delivery.id,
                    "p_now": now_dt,
                    "p_lease_until": now_dt + timedelta(seconds=lease),
                },
            )
            if row is None:
                return AttemptStart(None)
            claimed = _delivery(row)
            if start is None:
                return AttemptStart(claimed)
            self._take_slot(conn, key, interval, now, start, confirmed=confirmed)
            if confirmed:
                self._mark_sent(conn, delivery.id, now_dt)
        return AttemptStart(claimed, start=start, confirmed=confirmed)

    def claim_due(self, *, limit: int, lease: float) -> list[Delivery]:
        """Claim up to `limit` deliveries that are due, oldest first, for the worker."""
        now = _now()
        d = deliveries.c
        due = sa.and_(
            _not_final(),
            sa.or_(
                sa.and_(
                    d.status.in_(_RETRYABLE),
                    sa.or_(d.next_attempt_at.is_(None), d.next_attempt_at <= now),
                ),
                _lease_expired(now),
            ),
        )
        with self._write() as conn:
            # SKIP LOCKED lets concurrent workers take disjoint rows on PostgreSQL; on SQLite
            # the clause compiles to nothing and BEGIN IMMEDIATE makes this the only writer.
            ids = list(
                conn.execute(
                    sa.select(d.id)
                    .where(due)
                    .order_by(d.created_at, d.id)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                ).scalars()
            )
            if not ids:
                return []
            conn.execute(
                sa.update(deliveries)
                .where(d.id.in_(ids))
                .values(
                    status="in_flight",
                    lease_until=now + timedelta(seconds=lease),
                    updated_at=now,
                )
            )
            rows = conn.execute(
                sa.select(*_DELIVERY_COLUMNS).where(d.id.in_(ids)).order_by(d.created_at, d.id)
            ).all()
        return [_delivery(r) for r in rows]

    def mark_sent(self, delivery_id: str) -> None:
        """Count an attempt and note that it may reach MeetBit; call right before the call."""
        with self._fast(write=True) as conn:
            self._mark_sent(conn, delivery_id)

    def _mark_sent(self, conn: Conn, delivery_id: str, now: datetime | None = None) -> None:
        touched = self._q.mark_sent.run(
            conn, {"p_id": delivery_id, "p_now": now if now else _now()}
        )
        if touched != 1:
            raise KeyError(delivery_id)

    def complete(
        self,
        delivery_id: str,
        *,
        status: str,
        outcome: str | None,
        meetbit_status: int | None = None,
        event: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        last_error: str | None = None,
        next_attempt_at: datetime | None = None,
        sent: bool | None = None,
        canceled_source: str | None = None,
    ) -> Delivery:
        """Store the result of an attempt and release the lease, in one transaction.

        `sent` (when given) replaces the may-have-reached-MeetBit flag, e.g. cleared once
        MeetBit's answer settles it; `canceled_source` also records the delivery's event as
        canceled (see `mark_canceled`)."""
        if next_attempt_at is not None:
            _aware(next_attempt_at, "next_attempt_at")
        params: dict[str, Any] = {
            "p_id": delivery_id,
            "p_status": status,
            "p_outcome": outcome,
            "p_meetbit_status": meetbit_status,
            "p_event": event,
            "p_error": error,
            "p_last_error": last_error,
            "p_next_attempt_at": next_attempt_at,
            "p_now": _now(),
        }
        if sent is None:
            stmt = self._q.complete
        else:
            stmt = self._q.complete_sent
            params["p_sent"] = sent
        with self._fast(write=True) as conn:
            row = stmt.first(conn, params)
            if row is None:
                raise KeyError(delivery_id)
            done = _delivery(row)
            if canceled_source is not None:
                if done.calendar_id is None or done.event_id is None:
                    raise ValueError("a delivery without a target cannot cancel an event")
                self._canceled_upsert(conn, done.calendar_id, done.event_id, canceled_source, event)
        return done

    def release(self, delivery_id: str, *, next_attempt_at: datetime | None = None) -> None:
        """Give an in-flight delivery back without counting an attempt (no call was made)."""
        if next_attempt_at is not None:
            _aware(next_attempt_at, "next_attempt_at")
        with self._write() as conn:
            conn.execute(
                sa.update(deliveries)
                .where(deliveries.c.id == delivery_id, deliveries.c.status == "in_flight")
                .values(
                    status="pending",
                    lease_until=None,
                    next_attempt_at=next_attempt_at,
                    updated_at=_now(),
                )
            )

    def replay(self, delivery_id: str) -> Delivery | None:
        """Queue a failed or dead delivery again with a fresh attempt and age budget.

        Anything else (successes, pending, in flight) and failures without a MeetBit target
        (mapping errors) are returned unchanged; None if the id is unknown.
        """
        now = _now()
        d = deliveries.c
        with self._write() as conn:
            row = conn.execute(
                sa.select(d.status, d.calendar_id, d.event_id, d.max_age).where(d.id == delivery_id)
            ).first()
            if row is None:
                return None
            if (
                row.status not in ("failed", "dead")
                or row.calendar_id is None
                or row.event_id is None
            ):
                return self._fetch(conn, delivery_id)
            conn.execute(
                sa.update(deliveries)
                .where(d.id == delivery_id)
                .values(
                    status="pending",
                    outcome=None,
                    error=None,
                    attempts=0,
                    next_attempt_at=now,
                    lease_until=None,
                    expires_at=now + timedelta(seconds=row.max_age),
                    updated_at=now,
                )
            )
            return self._fetch(conn, delivery_id)

    def list(
        self,
        *,
        status: str | None = None,
        route: str | None = None,
        since: datetime | None = None,
        cursor: str | None = None,
        limit: int = 50,
        outcome: str | None = None,
        state: str | None = None,
    ) -> tuple[list[Delivery], str | None]:
        """Deliveries newest first, `limit` per page; pass the returned cursor for the next.

        `state`: `final` (no further call will be made) or `retrying` (failed transiently,
        the worker tries again)."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        d = deliveries.c
        query = sa.select(*_DELIVERY_COLUMNS)
        if status is not None:
            query = query.where(d.status == status)
        if route is not None:
            query = query.where(d.route == route)
        if since is not None:
            query = query.where(d.created_at >= _aware(since, "since"))
        if outcome is not None:
            query = query.where(d.outcome == outcome)
        if state == "final":
            query = query.where(sa.not_(_not_final()))
        elif state == "retrying":
            query = query.where(d.status == "failed", _not_final())
        elif state is not None:
            raise ValueError("state must be final or retrying")
        if cursor is not None:
            stamp, last_id = _decode_cursor(cursor, (str, str))
            at = _cursor_time(stamp)
            query = query.where(
                sa.or_(d.created_at < at, sa.and_(d.created_at == at, d.id < last_id))
            )
        query = query.order_by(d.created_at.desc(), d.id.desc()).limit(limit + 1)
        with self._read() as conn:
            rows = conn.execute(query).all()
        page = [_delivery(r) for r in rows[:limit]]
        more = None
        if len(rows) > limit:
            last = page[-1]
            more = _encode_cursor([last.created_at.isoformat(), last.id])
        return page, more

    def purge(self, *, older_than: datetime) -> int:
        """Delete final deliveries created before `older_than`, with old webhook receipts and
        stale worker heartbeats; returns the number of deliveries deleted."""
        _aware(older_than, "older_than")
        d = deliveries.c
        final = sa.or_(d.status == "dead", d.outcome.in_(_FINAL_LIST))
        with self._write() as conn:
            deleted = conn.execute(
                sa.delete(deliveries).where(final, d.created_at < older_than)
            ).rowcount
            conn.execute(
                sa.delete(webhook_receipts).where(webhook_receipts.c.received_at < older_than)
            )
            conn.execute(sa.delete(workers).where(workers.c.seen_at < older_than))
        return int(deleted)

    def counts_by_status(self) -> dict[str, int]:
        d = deliveries.c
        counts = dict.fromkeys(STATUSES, 0)
        with self._read() as conn:
            for status, count in conn.execute(
                sa.select(d.status, sa.func.count()).group_by(d.status)
            ).all():
                counts[status] = int(count)
        return counts

    def oldest_pending_age(self) -> float | None:
        """Age in seconds of the oldest delivery still awaiting a final outcome, or None."""
        d = deliveries.c
        with self._read() as conn:
            oldest: datetime | None = conn.execute(
                sa.select(sa.func.min(d.created_at)).where(
                    _not_final(), d.status.in_(("pending", "failed", "in_flight"))
                )
            ).scalar()
        if oldest is None:
            return None
        return max(0.0, (_now() - oldest).total_seconds())

    # -- canceled events ------------------------------------------------------------------

    def canceled_event(self, calendar_id: int, event_id: int) -> CanceledRecord | None:
        with self._fast(write=False) as conn:
            row = self._q.canceled.first(
                conn, {"p_calendar_id": calendar_id, "p_event_id": event_id}
            )
        if row is None:
            return None
        return CanceledRecord(
            calendar_id=row.calendar_id,
            event_id=row.event_id,
            source=row.source,
            event=row.event,
            canceled_at=row.canceled_at,
        )

    def mark_canceled(
        self, calendar_id: int, event_id: int, *, source: str, event: dict[str, Any] | None
    ) -> None:
        """Remember that the event is canceled. The first record keeps its source and time;
        a later call only fills in or refreshes the event JSON (never erases it)."""
        with self._fast(write=True) as conn:
            self._canceled_upsert(conn, calendar_id, event_id, source, event)

    def _canceled_upsert(
        self,
        conn: Conn,
        calendar_id: int,
        event_id: int,
        source: str,
        event: dict[str, Any] | None,
    ) -> None:
        self._q.canceled_upsert.run(
            conn,
            {
                "calendar_id": calendar_id,
                "event_id": event_id,
                "source": source,
                "event": event,
                "canceled_at": _now(),
            },
        )

    # -- links ----------------------------------------------------------------------------

    def put_link(self, key: str, calendar_id: int, event_id: int) -> bool:
        """Store `key -> (calendar_id, event_id)`; False if that link already existed."""
        stmt = (
            self._insert(links)
            .values(key=key, calendar_id=calendar_id, event_id=event_id, created_at=_now())
            .on_conflict_do_nothing(index_elements=["key", "calendar_id", "event_id"])
            .returning(links.c.key)
        )
        with self._write() as conn:
            return conn.execute(stmt).first() is not None

    def links(self, key: str) -> builtins.list[Link]:
        """The key's links, oldest first."""
        with self._fast(write=False) as conn:
            rows = self._q.links.rows(conn, {"p_key": key})
        return [_link(r) for r in rows]

    def delete_links(
        self, key: str, *, calendar_id: int | None = None, event_id: int | None = None
    ) -> int:
        c = links.c
        stmt = sa.delete(links).where(c.key == key)
        if calendar_id is not None:
            stmt = stmt.where(c.calendar_id == calendar_id)
        if event_id is not None:
            stmt = stmt.where(c.event_id == event_id)
        with self._write() as conn:
            return int(conn.execute(stmt).rowcount)

    def list_links(
        self, *, cursor: str | None = None, limit: int = 100
    ) -> tuple[builtins.list[Link], str | None]:
        """All links ordered by key, then target; keyset pagination like `list`."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        c = links.c
        query = sa.select(links)
        if cursor is not None:
            key, cal, ev = _decode_cursor(cursor, (str, int, int))
            query = query.where(
                sa.or_(
                    c.key > key,
                    sa.and_(c.key == key, c.calendar_id > cal),
                    sa.and_(c.key == key, c.calendar_id == cal, c.event_id > ev),
                )
            )
        query = query.order_by(c.key, c.calendar_id, c.event_id).limit(limit + 1)
        with self._read() as conn:
            rows = conn.execute(query).all()
        page = [_link(r) for r in rows[:limit]]
        more = None
        if len(rows) > limit:
            last = page[-1]
            more = _encode_cursor([last.key, last.calendar_id, last.event_id])
        return page, more

    # -- MeetBit webhook receipts ---------------------------------------------------------

    def remember_webhook(self, webhook_id: str) -> bool:
        """True the first time this webhook id is seen, False for every duplicate."""
        stmt = (
            self._insert(webhook_receipts)
            .values(webhook_id=webhook_id, received_at=_now())
            .on_conflict_do_nothing(index_elements=["webhook_id"])
            # RETURNING, not rowcount: drivers need not report rowcount for INSERT.
            .returning(webhook_receipts.c.webhook_id)
        )
        with self._write() as conn:
            return conn.execute(stmt).first() is not None

    # -- shared MeetBit rate limit --------------------------------------------------------
    # GCRA: one row per key holds the "theoretical arrival time" (tat), the earliest start the
    # next call may have. Times are epoch seconds from time.time(); hosts sharing a PostgreSQL
    # ledger are assumed to be NTP-synced.

    def _rate_row(self, conn: Conn, key: str) -> Any:
        """The key's rate row, locked for this transaction (created on first use)."""
        params = {"p_key": key}
        row = self._q.rate_row.first(conn, params)
        if row is None:
            self._q.rate_create.run(
                conn, {"key": key, "tat": 0.0, "paused_until": 0.0, "last_sent": 0.0}
            )
            row = self._q.rate_row.rows(conn, params)[0]
        return row

    def _slot(
        self, conn: Conn, key: str, interval: float, max_wait: float
    ) -> tuple[float, float | None, bool]:
        """Lock the key's rate row and decide, writing nothing: the time now, the start a
        reservation gets (None when beyond `max_wait`), and whether `confirm_slot` would let
        the call go at once (the start is now, no call in the last interval, no pause)."""
        rate = self._rate_row(conn, key)
        # Read the clock only once the row is ours, so waiting for the lock costs no slot.
        now = time.time()
        start = max(now, float(rate.tat), float(rate.paused_until))
        if start - now > max_wait:
            return now, None, False
        return now, start, start == now and float(rate.last_sent) + interval <= now

    def _take_slot(
        self,
        conn: Conn,
        key: str,
        interval: float,
        now: float,
        start: float,
        *,
        confirmed: bool,
    ) -> None:
        """Write what `_slot` decided: the reservation, and the send when confirmed."""
        if confirmed:
            params = {"p_key": key, "p_tat": start + interval, "p_last_sent": now}
            self._q.rate_take.run(conn, params)
        else:
            self._q.rate_reserve.run(conn, {"p_key": key, "p_tat": start + interval})

    def reserve_slot(self, key: str, *, interval: float, max_wait: float) -> float | None:
        """Reserve the next call slot, first come first served: returns its start (epoch
        seconds) to sleep until, or None, reserving nothing, when that is beyond `max_wait`.
        The reservation orders callers; `confirm_slot` at its start decides the actual call."""
        with self._fast(write=True) as conn:
            now, start, _ = self._slot(conn, key, interval, max_wait)
            if start is not None:
                self._take_slot(conn, key, interval, now, start, confirmed=False)
        return start

    def confirm_slot(
        self, key: str, *, interval: float, sending: str | None = None
    ) -> float | None:
        """At a reserved start: go (None) if no call went out in the last `interval` and no
        pause holds, marking delivery `sending` sent in the same transaction; else the epoch
        time to confirm again. This is what holds the spacing at the moment of the call, for
        a caller that woke late and for a pause written after a 429 while others slept."""
        with self._fast(write=True) as conn:
            row = self._rate_row(conn, key)
            now = time.time()
            earliest = max(float(row.last_sent) + interval, float(row.paused_until))
            if earliest > now:
                return earliest
            self._q.rate_sent.run(conn, {"p_key": key, "p_last_sent": now})
            if sending is not None:
                self._mark_sent(conn, sending)
        return None

    def next_slot(self, key: str) -> float:
        """The start a reservation would get now (reserves nothing): for "retry at" hints."""
        with self._fast(write=False) as conn:
            row = self._q.rate_read.first(conn, {"p_key": key})
        now = time.time()
        if row is None:
            return now
        return max(now, float(row.tat), float(row.paused_until))

    def pause_calls(self, key: str, *, until: float) -> None:
        """Hold every process's calls until `until` (epoch seconds), e.g. after a 429."""
        r = rate_limits.c
        stmt = self._insert(rate_limits).values(
            key=key, tat=until, paused_until=until, last_sent=0.0
        )
        excluded = stmt.excluded
        stmt = stmt.on_conflict_do_update(
            index_elements=["key"],
            set_={
                "paused_until": sa.case(
                    (excluded.paused_until > r.paused_until, excluded.paused_until),
                    else_=r.paused_until,
                ),
                "tat": sa.case((excluded.tat > r.tat, excluded.tat), else_=r.tat),
            },
        )
        with self._write() as conn:
            conn.execute(stmt)

    # -- worker presence ------------------------------------------------------------------

    def heartbeat(self, worker_id: str) -> None:
        stmt = self._insert(workers).values(worker_id=worker_id, seen_at=_now())
        stmt = stmt.on_conflict_do_update(
            index_elements=["worker_id"], set_={"seen_at": stmt.excluded.seen_at}
        )
        with self._write() as conn:
            conn.execute(stmt)

    def forget_worker(self, worker_id: str) -> None:
        with self._write() as conn:
            conn.execute(sa.delete(workers).where(workers.c.worker_id == worker_id))

    def workers_alive(self, *, within: float = 15.0) -> int:
        """How many workers sent a heartbeat in the last `within` seconds."""
        cutoff = _now() - timedelta(seconds=within)
        with self._fast(write=False) as conn:
            count = self._q.workers_alive.rows(conn, {"p_cutoff": cutoff})[0].alive
        return int(count or 0)
