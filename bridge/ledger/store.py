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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Row

from bridge.errors import LedgerUnavailable
from bridge.ledger.db import READ_ONLY, make_engine, normalize_url
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


_DELIVERY_FIELDS = tuple(Delivery.__dataclass_fields__)


def _delivery(row: Row[Any]) -> Delivery:
    m = row._mapping
    return Delivery(**{name: m[name] for name in _DELIVERY_FIELDS})


def _link(row: Row[Any]) -> Link:
    return Link(
        key=row.key, calendar_id=row.calendar_id, event_id=row.event_id, created_at=row.created_at
    )


def _not_final() -> sa.ColumnElement[bool]:
    d = deliveries.c
    return sa.and_(d.status != "dead", sa.or_(d.outcome.is_(None), d.outcome.not_in(_FINAL_LIST)))


def _lease_expired(now: datetime) -> sa.ColumnElement[bool]:
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


class Ledger:
    """Every read and write of the ledger database. Safe to share between threads; each
    process (and each bridge instance) builds its own and they coordinate through the database.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine = make_engine(url)
        self._dialect = self._engine.dialect.name

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

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._translate(), self._engine.connect() as conn:
            conn.execution_options(**{READ_ONLY: True})
            with conn.begin():
                yield conn

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
        self._engine.dispose()

    # -- deliveries -----------------------------------------------------------------------

    def _fetch(self, conn: Connection, delivery_id: str) -> Delivery | None:
        row = conn.execute(sa.select(deliveries).where(deliveries.c.id == delivery_id)).first()
        return None if row is None else _delivery(row)

    def record(self, items: Sequence[NewDelivery]) -> list[tuple[Delivery, bool]]:
        """Store every item in one transaction; an item whose (route, key, seq) is already
        stored returns the stored row with `created=False`."""
        if not items:
            return []
        now = _now()
        d = deliveries.c
        out: list[tuple[Delivery, bool]] = []
        with self._write() as conn:
            for item in items:
                new_id = new_delivery_id()
                stmt = (
                    self._insert(deliveries)
                    .values(
                        id=new_id,
                        route=item.route,
                        idempotency_key=item.idempotency_key,
                        seq=item.seq,
                        calendar_id=item.calendar_id,
                        event_id=item.event_id,
                        note=item.note,
                        status=item.status,
                        outcome=item.outcome,
                        attempts=0,
                        max_attempts=item.max_attempts,
                        max_age=item.max_age,
                        created_at=now,
                        updated_at=now,
                        expires_at=now + timedelta(seconds=item.max_age),
                        next_attempt_at=None,
                        lease_until=None,
                        last_error=None,
                        meetbit_status=None,
                        event=None,
                        error=item.error,
                        sent=False,
                    )
                    # A concurrent identical call waits for ours (PG) or for the write lock
                    # (SQLite) and then reads the row we stored.
                    .on_conflict_do_nothing(index_elements=["route", "idempotency_key", "seq"])
                )
                conn.execute(stmt)
                row = conn.execute(
                    sa.select(deliveries).where(
                        d.route == item.route,
                        d.idempotency_key == item.idempotency_key,
                        d.seq == item.seq,
                    )
                ).one()
                out.append((_delivery(row), row.id == new_id))
        return out

    def get(self, delivery_id: str) -> Delivery | None:
        with self._read() as conn:
            return self._fetch(conn, delivery_id)

    def find(self, route: str, idempotency_key: str) -> list[Delivery]:
        d = deliveries.c
        with self._read() as conn:
            rows = conn.execute(
                sa.select(deliveries)
                .where(d.route == route, d.idempotency_key == idempotency_key)
                .order_by(d.seq)
            ).all()
        return [_delivery(r) for r in rows]

    def claim(self, delivery_id: str, *, lease: float) -> Delivery | None:
        """Take the delivery for one attempt, or None if it is final or someone holds it."""
        now = _now()
        d = deliveries.c
        with self._write() as conn:
            row = conn.execute(
                sa.update(deliveries)
                .where(
                    d.id == delivery_id,
                    _not_final(),
                    sa.or_(d.status.in_(_RETRYABLE), _lease_expired(now)),
                )
                .values(
                    status="in_flight",
                    lease_until=now + timedelta(seconds=lease),
                    updated_at=now,
                )
                .returning(*deliveries.c)
            ).first()
        return None if row is None else _delivery(row)

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
                sa.select(deliveries).where(d.id.in_(ids)).order_by(d.created_at, d.id)
            ).all()
        return [_delivery(r) for r in rows]

    def mark_sent(self, delivery_id: str) -> None:
        """Count an attempt and note that it may reach MeetBit; call right before the call."""
        with self._write() as conn:
            self._mark_sent(conn, delivery_id)

    def _mark_sent(self, conn: Connection, delivery_id: str) -> None:
        result = conn.execute(
            sa.update(deliveries)
            .where(deliveries.c.id == delivery_id)
            .values(attempts=deliveries.c.attempts + 1, sent=True, updated_at=_now())
        )
        if result.rowcount != 1:
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
        values: dict[str, Any] = {} if sent is None else {"sent": sent}
        with self._write() as conn:
            row = conn.execute(
                sa.update(deliveries)
                .where(deliveries.c.id == delivery_id)
                .values(
                    **values,
                    status=status,
                    outcome=outcome,
                    meetbit_status=meetbit_status,
                    event=event,
                    error=error,
                    last_error=last_error,
                    next_attempt_at=next_attempt_at,
                    lease_until=None,
                    updated_at=_now(),
                )
                .returning(*deliveries.c)
            ).first()
            if row is None:
                raise KeyError(delivery_id)
            done = _delivery(row)
            if canceled_source is not None:
                if done.calendar_id is None or done.event_id is None:
                    raise ValueError("a delivery without a target cannot cancel an event")
                conn.execute(
                    self._canceled_upsert(done.calendar_id, done.event_id, canceled_source, event)
                )
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
            row = conn.execute(sa.select(deliveries).where(d.id == delivery_id)).first()
            if row is None:
                return None
            if (
                row.status not in ("failed", "dead")
                or row.calendar_id is None
                or row.event_id is None
            ):
                return _delivery(row)
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
    ) -> tuple[list[Delivery], str | None]:
        """Deliveries newest first, `limit` per page; pass the returned cursor for the next."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        d = deliveries.c
        query = sa.select(deliveries)
        if status is not None:
            query = query.where(d.status == status)
        if route is not None:
            query = query.where(d.route == route)
        if since is not None:
            query = query.where(d.created_at >= _aware(since, "since"))
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
        c = canceled_events.c
        with self._read() as conn:
            row = conn.execute(
                sa.select(canceled_events).where(
                    c.calendar_id == calendar_id, c.event_id == event_id
                )
            ).first()
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
        with self._write() as conn:
            conn.execute(self._canceled_upsert(calendar_id, event_id, source, event))

    def _canceled_upsert(
        self, calendar_id: int, event_id: int, source: str, event: dict[str, Any] | None
    ) -> sa.Executable:
        stmt = self._insert(canceled_events).values(
            calendar_id=calendar_id,
            event_id=event_id,
            source=source,
            event=event,
            canceled_at=_now(),
        )
        return stmt.on_conflict_do_update(
            index_elements=["calendar_id", "event_id"],
            set_={"event": sa.func.coalesce(stmt.excluded.event, canceled_events.c.event)},
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
        c = links.c
        with self._read() as conn:
            rows = conn.execute(
                sa.select(links)
                .where(c.key == key)
                .order_by(c.created_at, c.calendar_id, c.event_id)
            ).all()
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

    def _rate_row(self, conn: Connection, key: str) -> Row[Any]:
        """The key's rate row, locked for this transaction (created on first use)."""
        query = sa.select(rate_limits).where(rate_limits.c.key == key).with_for_update()
        row = conn.execute(query).first()
        if row is None:
            conn.execute(
                self._insert(rate_limits)
                .values(key=key, tat=0.0, paused_until=0.0, last_sent=0.0)
                .on_conflict_do_nothing(index_elements=["key"])
            )
            row = conn.execute(query).one()
        return row

    def reserve_slot(self, key: str, *, interval: float, max_wait: float) -> float | None:
        """Reserve the next call slot, first come first served: returns its start (epoch
        seconds) to sleep until, or None, reserving nothing, when that is beyond `max_wait`.
        The reservation orders callers; `confirm_slot` at its start decides the actual call."""
        with self._write() as conn:
            row = self._rate_row(conn, key)
            # Read the clock only once the row is ours, so waiting for the lock costs no slot.
            now = time.time()
            start = max(now, float(row.tat), float(row.paused_until))
            if start - now > max_wait:
                return None
            conn.execute(
                sa.update(rate_limits).where(rate_limits.c.key == key).values(tat=start + interval)
            )
        return start

    def confirm_slot(
        self, key: str, *, interval: float, sending: str | None = None
    ) -> float | None:
        """At a reserved start: go (None) if no call went out in the last `interval` and no
        pause holds, marking delivery `sending` sent in the same transaction; else the epoch
        time to confirm again. This is what holds the spacing at the moment of the call, for
        a caller that woke late and for a pause written after a 429 while others slept."""
        with self._write() as conn:
            row = self._rate_row(conn, key)
            now = time.time()
            earliest = max(float(row.last_sent) + interval, float(row.paused_until))
            if earliest > now:
                return earliest
            conn.execute(
                sa.update(rate_limits).where(rate_limits.c.key == key).values(last_sent=now)
            )
            if sending is not None:
                self._mark_sent(conn, sending)
        return None

    def next_slot(self, key: str) -> float:
        """The start a reservation would get now (reserves nothing): for "retry at" hints."""
        with self._read() as conn:
            row = conn.execute(sa.select(rate_limits).where(rate_limits.c.key == key)).first()
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
        with self._read() as conn:
            count = conn.execute(
                sa.select(sa.func.count()).select_from(workers).where(workers.c.seen_at >= cutoff)
            ).scalar()
        return int(count or 0)
