"""Prepared statements and driver transactions on a real SQLite file and a real PostgreSQL
database: values stored and read exactly as through SQLAlchemy's `Connection.execute`, a
transaction kept or dropped as a whole, driver errors wrapped as SQLAlchemy wraps them, and a
connection lost mid-transaction invalidated rather than handed out again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from bridge.core.delivery import Completion
from bridge.ledger import Ledger, NewDelivery
from bridge.ledger.database import normalize_url
from bridge.ledger.deliveries import COLUMNS as _DELIVERY_COLUMNS
from bridge.ledger.deliveries import RETURNED
from bridge.ledger.prepared import Prepared, transaction
from bridge.ledger.tables import canceled_events, deliveries

EVENT = {"id": 7, "title": "Démo", "attendees": [{"email": "a@example.com"}]}


def row_values(delivery_id: str, **changes: Any) -> dict[str, Any]:
    now = datetime(2026, 11, 24, 9, 30, 15, 123456, tzinfo=UTC)
    values: dict[str, Any] = {
        "id": delivery_id,
        "route": "crm",
        "idempotency_key": "key-" + delivery_id,
        "seq": 0,
        "calendar_id": 2**40,  # BIGINT range
        "event_id": 7,
        "note": "Lost deal — «Ünïcode» note",
        "status": "succeeded",
        "outcome": "canceled",
        "attempts": 1,
        "max_attempts": 10,
        "max_age": 86400.0,
        "created_at": now,
        "updated_at": now,
        "expires_at": now + timedelta(days=1),
        "next_attempt_at": None,
        "lease_until": None,
        "last_error": None,
        "meetbit_status": 200,
        "error": None,
        "sent": True,
        "request_id": "req_" + delivery_id,
        "x_request_id": "x-" + delivery_id,
        "traceparent": None,
    }
    values.update(changes)
    return values


def read_with_sqlalchemy(conn: sa.Connection, delivery_id: str) -> tuple[Any, ...]:
    row = conn.execute(sa.select(*_DELIVERY_COLUMNS).where(deliveries.c.id == delivery_id)).one()
    return tuple(row)


def test_prepared_and_sqlalchemy_store_and_read_the_same_values(ledger: Ledger) -> None:
    engine = ledger.db.engine
    insert = Prepared(ledger.db.insert(deliveries).returning(*RETURNED), engine.dialect)
    get = Prepared(
        sa.select(*_DELIVERY_COLUMNS).where(deliveries.c.id == sa.bindparam("p_id")),
        engine.dialect,
    )
    with engine.begin() as conn:
        # The event of a canceled delivery is its event's canceled row, packed.
        conn.execute(
            sa.insert(canceled_events),
            {"calendar_id": 2**40, "event_id": 7, "source": "bridge", "event": EVENT,
             "canceled_at": datetime(2026, 11, 24, tzinfo=UTC)},
        )  # fmt: skip
        # Written prepared, read back both ways.
        returned = insert.first(conn, row_values("dlv_a"))
        assert returned.event is None  # RETURNING cannot read the canceled row
        read = get.first(conn, {"p_id": "dlv_a"})
        assert returned._replace(event=read.event) == read
        assert returned.created_at == datetime(2026, 11, 24, 9, 30, 15, 123456, tzinfo=UTC)
        assert returned.sent is True and returned.next_attempt_at is None
        assert tuple(get.first(conn, {"p_id": "dlv_a"})) == read_with_sqlalchemy(conn, "dlv_a")
        assert get.first(conn, {"p_id": "dlv_a"}).event == EVENT

        # Written by SQLAlchemy (None as SQL NULL, not JSON null), read prepared.
        conn.execute(sa.insert(deliveries), row_values("dlv_b", outcome=None, sent=False))
        assert tuple(get.first(conn, {"p_id": "dlv_b"})) == read_with_sqlalchemy(conn, "dlv_b")
        assert get.first(conn, {"p_id": "dlv_b"}).event is None  # not canceled: no event
        null_errors = conn.execute(
            sa.select(sa.func.count()).where(deliveries.c.error.is_(None))
        ).scalar()
        assert null_errors == 2
        assert get.first(conn, {"p_id": "dlv_missing"}) is None


def test_driver_errors_are_raised_as_sqlalchemy_errors(ledger: Ledger) -> None:
    engine = ledger.db.engine
    insert = Prepared(ledger.db.insert(deliveries), engine.dialect)
    with engine.connect() as conn:
        with pytest.raises(sa.exc.IntegrityError) as info:
            insert.run(conn, row_values("dlv_bad", status="exploded"))  # fails the CHECK
        assert not info.value.connection_invalidated
        conn.rollback()
    # The ledger's own API turns the same error into its ValueError, as before.
    [(stored, _)] = ledger.deliveries.record([_pending("crm", "k1")])
    with pytest.raises(ValueError, match="rejected the values"):
        ledger.attempts.complete(stored.id, Completion("exploded", None))
    assert ledger.deliveries.get(stored.id) == stored


def _pending(route: str, key: str) -> NewDelivery:
    return NewDelivery(route=route, idempotency_key=key, calendar_id=1, event_id=1)


def test_statements_needing_execution_time_compilation_are_refused(ledger: Ledger) -> None:
    expanding = sa.select(deliveries.c.id).where(deliveries.c.status.in_(["pending", "failed"]))
    with pytest.raises(ValueError, match="execution-time compilation"):
        Prepared(expanding, ledger.db.engine.dialect)


@pytest.mark.postgres
def test_a_connection_lost_mid_transaction_is_invalidated(pg_url: str) -> None:
    led = Ledger(pg_url)
    led.ensure_schema()
    admin = sa.create_engine(normalize_url(pg_url), isolation_level="AUTOCOMMIT")
    get = Prepared(
        sa.select(deliveries.c.id).where(deliveries.c.id == sa.bindparam("p_id")),
        led.db.engine.dialect,
    )
    try:
        [(stored, _)] = led.deliveries.record([_pending("crm", "k1")])
        with led.db.engine.connect() as conn:
            pid = conn.execute(sa.select(sa.func.pg_backend_pid())).scalar()
            with admin.connect() as other:
                other.execute(sa.select(sa.func.pg_terminate_backend(pid)))
            with pytest.raises(sa.exc.OperationalError) as info:
                get.first(conn, {"p_id": stored.id})
            assert info.value.connection_invalidated
            assert conn.invalidated
        # The pool dropped that connection: the next caller gets a working one.
        assert led.deliveries.get(stored.id) == stored
    finally:
        admin.dispose()
        led.dispose()


def test_a_driver_transaction_is_kept_or_dropped_as_a_whole(ledger: Ledger) -> None:
    engine = ledger.db.engine
    insert = Prepared(ledger.db.insert(deliveries), engine.dialect)
    with transaction(engine, write=True) as conn:
        insert.run(conn, row_values("dlv_kept"))
        insert.run(conn, row_values("dlv_kept_too", idempotency_key="other"))
    with pytest.raises(RuntimeError), transaction(engine, write=True) as conn:
        insert.run(conn, row_values("dlv_dropped", idempotency_key="third"))
        raise RuntimeError("the caller failed half-way")
    with engine.connect() as conn:
        ids = conn.execute(sa.select(deliveries.c.id).order_by(deliveries.c.id)).scalars().all()
    assert ids == ["dlv_kept", "dlv_kept_too"]


@pytest.mark.postgres
def test_a_driver_transaction_that_loses_its_connection_is_invalidated(pg_url: str) -> None:
    led = Ledger(pg_url)
    led.ensure_schema()
    admin = sa.create_engine(normalize_url(pg_url), isolation_level="AUTOCOMMIT")
    dialect = led.db.engine.dialect
    backend = Prepared(sa.select(sa.func.pg_backend_pid().label("pid")), dialect)
    get = Prepared(
        sa.select(deliveries.c.id).where(deliveries.c.id == sa.bindparam("p_id")), dialect
    )
    invalidated: list[object] = []
    sa.event.listen(led.db.engine, "invalidate", lambda *args: invalidated.append(args))
    try:
        [(stored, _)] = led.deliveries.record([_pending("crm", "k1")])
        with pytest.raises(sa.exc.OperationalError) as info:
            with transaction(led.db.engine, write=False) as conn:
                pid = backend.first(conn, {}).pid
                with admin.connect() as other:
                    other.execute(sa.select(sa.func.pg_terminate_backend(pid)))
                get.first(conn, {"p_id": stored.id})
        assert info.value.connection_invalidated and len(invalidated) == 1
        # The pool dropped that connection: the next caller gets a working one.
        assert led.deliveries.get(stored.id) == stored
    finally:
        admin.dispose()
        led.dispose()
