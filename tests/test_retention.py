"""The ledger at scale, on a real SQLite file and a real PostgreSQL database: the MeetBit event
stored once (deliveries name it), migration 0006 converting existing rows both ways, purge in
batches (canceled events kept while a delivery names them), a SQLite file that shrinks after a
purge, and the scheduled purge taken by one process at a time."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory

from bridge.core.delivery import NewDelivery, canceled
from bridge.delivery.maintenance import PurgeSchedule
from bridge.ledger import AttemptRecord, Ledger, Slot, migrate
from bridge.ledger.database import normalize_url
from bridge.ledger.packing import pack, unpack
from bridge.ledger.tables import canceled_events, deliveries
from bridge.sandbox.events import generate_event
from bridge.settings import Settings

SLOT = Slot("test", ceiling=1e6, max_wait=5.0)
# The revision this migration follows (the chain's order depends on what landed first).
BEFORE = str(
    ScriptDirectory.from_config(migrate.alembic_config()).get_revision("0006_scale").down_revision
)
MAIN = [sys.executable, "-c", "from bridge.cli import main; main()"]


def cancel_through(ledger: Ledger, key: str, event_id: int) -> Any:
    """One cancel as the hot path makes it: start (record, slot, claim), MeetBit's answer."""
    item = NewDelivery(
        route="crm", idempotency_key=key, calendar_id=12, event_id=event_id, note="n"
    )
    started = ledger.attempts.start(item, lease=30, slot=SLOT)
    assert started.delivery is not None
    at = datetime.now(UTC)
    event = dict(generate_event(12, event_id), cancel_note="n", deleted_at="2026-12-04T00:00:00Z")
    return ledger.attempts.complete(
        started.delivery.id,
        canceled(event),
        attempt=AttemptRecord(1, "web test:1", at, at, sent=True),
        rate_key=SLOT.key,
    )


def age(ledger: Ledger, ids: list[str], days: float) -> None:
    past = datetime.now(UTC) - timedelta(days=days)
    with ledger.db.write() as conn:
        conn.execute(sa.update(deliveries).where(deliveries.c.id.in_(ids)).values(created_at=past))


def age_canceled(ledger: Ledger, days: float) -> None:
    past = datetime.now(UTC) - timedelta(days=days)
    with ledger.db.write() as conn:
        conn.execute(sa.update(canceled_events).values(canceled_at=past))


# -- the event stored once ----------------------------------------------------------------------


def test_packing_round_trips_and_deflates_a_meetbit_event() -> None:
    event = generate_event(12, 345)
    packed = pack(event)
    assert unpack(packed) == event
    assert len(packed) < len(str(event)) / 3  # ~1.2 KB of JSON to ~350 bytes
    assert unpack(pack({"a": "é"})) == {"a": "é"}  # too small to deflate: stored as JSON
    with pytest.raises(ValueError, match="unknown packed JSON format"):
        unpack(b"\x07{}")


def test_the_event_is_stored_once_and_every_delivery_of_it_answers_with_it(ledger: Ledger) -> None:
    done = cancel_through(ledger, "first", 501)
    assert done.outcome == "canceled" and done.event["id"] == 501
    assert ledger.deliveries.get(done.id) == done  # read back: the same event
    # A later cancel of the same event under another key: settled from the canceled row.
    again = ledger.attempts.start(
        NewDelivery(route="crm", idempotency_key="second", calendar_id=12, event_id=501),
        lease=30,
        slot=SLOT,
    ).delivery
    assert again is not None and again.outcome == "already_canceled"
    assert again.event == done.event == ledger.deliveries.get(again.id).event  # type: ignore[union-attr]
    assert "event" not in deliveries.c  # one copy: the canceled row's
    with ledger.db.read() as conn:
        stored = conn.execute(
            sa.select(sa.func.length(canceled_events.c.event)).where(
                canceled_events.c.event_id == 501
            )
        ).scalar_one()
    assert stored < 500
    # A MeetBit webhook's later mark of the event changes nothing that was answered.
    ledger.canceled.mark(12, 501, source="meetbit", event={"id": 501, "other": True})
    assert ledger.deliveries.get(done.id) == done


def test_migration_converts_existing_rows_both_ways(empty_database_url: str) -> None:
    url = empty_database_url
    engine = sa.create_engine(normalize_url(url))
    old_deliveries = sa.table(
        "deliveries",
        *(sa.column(c.name) for c in deliveries.c),
        sa.column("event", sa.JSON(none_as_null=True)),
    )
    old_canceled = sa.table(
        "canceled_events", *(sa.column(c.name) for c in canceled_events.c if c.name != "event"),
        sa.column("event", sa.JSON(none_as_null=True)),
    )  # fmt: skip
    at = datetime(2026, 11, 1, tzinfo=UTC)
    e1, e2, e3 = generate_event(1, 10), generate_event(1, 20), generate_event(1, 30)

    def row(i: str, event_id: int, outcome: str | None, event: Any) -> dict[str, Any]:
        return {
            "id": i, "route": "crm", "idempotency_key": i, "seq": 0, "calendar_id": 1,
            "event_id": event_id, "note": "n", "status": "succeeded" if outcome else "pending",
            "outcome": outcome, "attempts": 1, "max_attempts": 10, "max_age": 60.0,
            "created_at": at, "updated_at": at, "expires_at": at, "next_attempt_at": None,
            "lease_until": None, "last_error": None, "meetbit_status": 200, "event": event,
            "error": None, "sent": True,
        }  # fmt: skip

    try:
        with engine.begin() as conn:
            cfg = migrate.alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, BEFORE)
            conn.execute(
                sa.insert(old_deliveries),
                [
                    row("dlv_1", 10, "canceled", e1),  # its canceled row has no event yet
                    row("dlv_2", 10, "already_canceled", e1),
                    row("dlv_3", 20, "canceled", e2),  # no canceled row at all
                    row("dlv_4", 40, None, None),  # pending: nothing to move
                ],
            )
            conn.execute(
                sa.insert(old_canceled),
                [
                    {"calendar_id": 1, "event_id": 10, "source": "meetbit", "event": None,
                     "canceled_at": at},
                    {"calendar_id": 1, "event_id": 30, "source": "bridge", "event": e3,
                     "canceled_at": at},
                ],
            )  # fmt: skip
        led = Ledger(url)
        try:
            led.upgrade()
            assert [led.deliveries.get(f"dlv_{i}").event for i in (1, 2, 3, 4)] == [  # type: ignore[union-attr]
                e1, e1, e2, None
            ]  # fmt: skip
            assert led.canceled.find(1, 10).event == e1  # type: ignore[union-attr]
            assert led.canceled.find(1, 10).source == "meetbit"  # type: ignore[union-attr]
            assert led.canceled.find(1, 20).event == e2  # type: ignore[union-attr]
            assert led.canceled.find(1, 30).event == e3  # type: ignore[union-attr]
        finally:
            led.dispose()
        with engine.begin() as conn:
            cfg = migrate.alembic_config()
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, BEFORE)
            events = dict(
                conn.execute(sa.select(old_deliveries.c.id, old_deliveries.c.event)).all()
            )
            kept = conn.execute(
                sa.select(old_canceled.c.event).where(old_canceled.c.event_id == 30)
            ).scalar_one()
        assert events == {"dlv_1": e1, "dlv_2": e1, "dlv_3": e2, "dlv_4": None}
        assert kept == e3
    finally:
        engine.dispose()


# -- purge ---------------------------------------------------------------------------------------


def test_purge_goes_in_batches_and_keeps_canceled_events_a_delivery_names(ledger: Ledger) -> None:
    old = [cancel_through(ledger, f"old{i}", 600 + i).id for i in range(25)]
    recent = cancel_through(ledger, "recent", 700).id
    [(pending, _)] = ledger.deliveries.record(
        [NewDelivery(route="crm", idempotency_key="open", calendar_id=12, event_id=800)]
    )
    age(ledger, [*old, pending.id], days=40)
    age_canceled(ledger, days=40)
    seen: list[int] = []
    cutoff = datetime.now(UTC) - timedelta(days=30)
    assert ledger.queries.purge(older_than=cutoff, progress=seen.append, batch=10) == 25
    # A transaction per batch of 10 rows walked; the pending one is stepped over.
    assert len(seen) == 3 and seen[-1] == 25 and seen == sorted(seen) and seen[0] >= 9
    assert ledger.deliveries.get(pending.id) is not None
    assert ledger.deliveries.get(recent) is not None
    # Old canceled events no delivery names are gone: a cancel of one calls MeetBit again
    # (which answers 404 for a soft-deleted event). The one a kept delivery names stays.
    assert ledger.canceled.find(12, 600) is None
    assert ledger.canceled.find(12, 700) is not None
    assert ledger.deliveries.get(recent).event["id"] == 700  # type: ignore[union-attr]
    with ledger.db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(canceled_events)).scalar() == 1


def fill(ledger: Ledger, n: int, *, days: float) -> None:
    """`n` delivered cancels with their events and attempts, written in one transaction."""
    at = datetime.now(UTC) - timedelta(days=days)
    event = generate_event(12, 1)
    with ledger.db.write() as conn:
        conn.execute(
            sa.insert(deliveries),
            [
                {"id": f"dlv_{days}_{i}", "route": "crm", "idempotency_key": f"{days}-{i}",
                 "seq": 0, "calendar_id": 12, "event_id": int(days * 1e6) + i, "note": "n",
                 "status": "succeeded", "outcome": "canceled", "attempts": 1,
                 "max_attempts": 10, "max_age": 60.0, "created_at": at, "updated_at": at,
                 "expires_at": at, "sent": True}
                for i in range(n)
            ],
        )  # fmt: skip
        conn.execute(
            sa.insert(canceled_events),
            [
                {"calendar_id": 12, "event_id": int(days * 1e6) + i, "source": "bridge",
                 "event": dict(event, id=i), "canceled_at": at}
                for i in range(n)
            ],
        )  # fmt: skip


def file_size(path: Path) -> int:
    return path.stat().st_size + sum(
        p.stat().st_size for p in path.parent.glob(path.name + "-*") if p.name.endswith("wal")
    )


def checkpointed(url: str) -> Path:
    path = Path(sa.make_url(url).database or "")
    with sa.create_engine(url).connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


def test_a_purged_sqlite_file_shrinks_to_what_it_keeps(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'big.db'}"
    fresh_url = f"sqlite:///{tmp_path / 'fresh.db'}"
    ledger, fresh = Ledger(url), Ledger(fresh_url)
    try:
        ledger.ensure_schema()
        fresh.ensure_schema()
        fill(ledger, 4000, days=40)
        fill(ledger, 500, days=1)
        fill(fresh, 500, days=1)
        ledger.db.dispose()
        before = file_size(checkpointed(url))
        assert ledger.queries.purge(older_than=datetime.now(UTC) - timedelta(days=30)) == 4000
        ledger.db.dispose()
        after = file_size(checkpointed(url))
        fresh.db.dispose()
        kept = file_size(checkpointed(fresh_url))
    finally:
        ledger.dispose()
        fresh.dispose()
    assert after < before / 4
    assert after <= kept * 1.2, (before, after, kept)


def test_upgrade_turns_on_incremental_vacuum_in_an_older_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)  # as an older bridge made it: no auto-vacuum
    try:
        with engine.begin() as conn:
            cfg = migrate.alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, BEFORE)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA auto_vacuum").scalar() == 0
    finally:
        engine.dispose()
    led = Ledger(url)
    try:
        led.upgrade()
        with led.db.read() as conn:
            assert conn.exec_driver_sql("PRAGMA auto_vacuum").scalar() == 2  # incremental
    finally:
        led.dispose()


# -- the scheduled purge -------------------------------------------------------------------------


def test_purge_every_is_read_as_a_period() -> None:
    assert Settings.from_env({"BRIDGE_PURGE_EVERY": "6h"}, require_meetbit=False).purge_every == (
        21600.0
    )
    assert Settings.from_env({}, require_meetbit=False).purge_every is None
    for bad in ("often", "10s", "0", "400d"):
        with pytest.raises(Exception, match="BRIDGE_PURGE_EVERY is invalid"):
            Settings.from_env({"BRIDGE_PURGE_EVERY": bad}, require_meetbit=False)


def test_one_process_at_a_time_purges_on_the_shared_schedule(database_url: str) -> None:
    a, b = Ledger(database_url), Ledger(database_url)
    try:
        first = PurgeSchedule(a, every=3600, keep_days=30, holder="a")
        second = PurgeSchedule(b, every=3600, keep_days=30, holder="b")
        assert a.coordination.take_lease("purge", "a", seconds=60, every=3600)
        assert second.run_if_due() is None  # a holds it
        a.coordination.release_lease("purge", "a", done=False)
        old = [cancel_through(a, f"k{i}", 900 + i).id for i in range(3)]
        age(a, old, days=40)
        assert second.run_if_due() == 3  # free and due: b purges
        assert first.run_if_due() is None  # done an hour ago at most: not due for anyone
        assert b.coordination.take_lease("purge", "b", seconds=60, every=0)  # due at every=0
    finally:
        a.dispose()
        b.dispose()


def test_the_worker_thread_purges_when_due_and_stops(ledger: Ledger) -> None:
    old = [cancel_through(ledger, f"w{i}", 950 + i).id for i in range(2)]
    age(ledger, old, days=40)
    schedule = PurgeSchedule(ledger, every=60, keep_days=30, holder="worker")
    stop = threading.Event()
    thread = threading.Thread(target=schedule.run, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while any(ledger.deliveries.get(i) for i in old) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(ledger.deliveries.get(i) for i in old)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()


@pytest.mark.slow
def test_db_purge_draws_a_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    led = Ledger(url)
    try:
        led.ensure_schema()
        fill(led, 1500, days=40)
    finally:
        led.dispose()
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            [*MAIN, "db", "purge", "--yes"],
            stdin=terminal,
            stdout=terminal,
            stderr=terminal,
            env={"PATH": "/usr/bin:/bin", "DATABASE_URL": url},
        )
        output = b""
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            try:
                os.set_blocking(controller, False)
                output += os.read(controller, 65536)
            except (BlockingIOError, OSError):
                time.sleep(0.05)
        process.wait(timeout=5)
        try:
            output += os.read(controller, 65536)
        except (BlockingIOError, OSError):
            pass
    finally:
        os.close(controller)
        os.close(terminal)
    text = output.decode(errors="replace")
    assert process.returncode == 0, text
    assert "purging  [----" in text and "[####################################]  1500/1500" in text
    assert "purged 1500 deliveries older than 30 days" in text
