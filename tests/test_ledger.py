"""The ledger on a real SQLite file and a real PostgreSQL database: schema, delivery queue,
canceled events, links, webhook receipts and failure to reach the database."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa

from bridge.core.delivery import Completion, Start
from bridge.errors import LedgerUnavailable
from bridge.ledger import Delivery, Ledger, NewDelivery, Slot, migrate, tables
from bridge.ledger.database import normalize_url
from bridge.ledger.deliveries import new_row

T = TypeVar("T")


def run_together(url: str, n: int, fn: Callable[[Ledger], T]) -> list[T]:
    """Run `fn` in `n` threads at once, each with its own Ledger (own connections)."""
    barrier = threading.Barrier(n)
    ledgers = [Ledger(url) for _ in range(n)]

    def call(led: Ledger) -> T:
        barrier.wait(timeout=10)
        return fn(led)

    try:
        with ThreadPoolExecutor(n) as pool:
            return [f.result() for f in [pool.submit(call, led) for led in ledgers]]
    finally:
        for led in ledgers:
            led.dispose()


def version_rows(url: str) -> list[str]:
    engine = sa.create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            return list(
                conn.execute(sa.text("SELECT version_num FROM bridge_alembic_version")).scalars()
            )
    finally:
        engine.dispose()


def cancel(
    key: str, seq: int = 0, *, status: str = "pending", max_age: float = 86400.0
) -> NewDelivery:
    return NewDelivery(
        route="crm",
        idempotency_key=key,
        seq=seq,
        calendar_id=12,
        event_id=345 + seq,
        note="deal lost",
        status=status,
        max_age=max_age,
    )


def claim(ledger: Ledger, which: str | None, *, lease: float = 30) -> Delivery | None:
    """Start an attempt whose slot lies far ahead: the row is claimed, nothing counted or
    sent, as while an attempt waits for its slot; None if nothing was claimed."""
    ledger.rate.pause("held", until=time.time() + 3600)
    started = ledger.attempts.start(which, lease=lease, slot=Slot("held", 1000.0, 7200))
    return started.delivery if started.kind is Start.WAIT else None


def attempt(ledger: Ledger, which: str, *, lease: float = 30) -> Delivery:
    """Start an attempt that may call at once: claimed, counted and marked sent. (The slots of
    a window are spread over its first 0.8 s: at a million a second, a slot is never in the
    future by more than a microsecond, which no two attempts here come closer than.)"""
    started = ledger.attempts.start(which, lease=lease, slot=Slot("free", 1e6, 60))
    assert started.kind is Start.CALL and started.delivery is not None
    return started.delivery


def complete(
    ledger: Ledger, delivery_id: str, status: str, outcome: str | None, **kw: Any
) -> Delivery:
    return ledger.attempts.complete(delivery_id, Completion(status, outcome, **kw))


# -- schema -----------------------------------------------------------------------------


def test_the_migrations_form_one_chain() -> None:
    # Two revisions naming the same parent leave two heads, and `db upgrade` then refuses
    # to run on a fresh ledger: every migration must build on the one before it.
    assert len(migrate.head_revisions()) == 1


def test_upgrade_twice_keeps_data_and_one_version(empty_database_url: str) -> None:
    led = Ledger(empty_database_url)
    try:
        led.upgrade()
        [(stored, created)] = led.deliveries.record([cancel("k1")])
        assert created
        led.upgrade()
        led.ensure_schema()
        assert led.deliveries.get(stored.id) == stored
        assert version_rows(empty_database_url) == sorted(migrate.head_revisions())
    finally:
        led.dispose()


def test_a_second_delivery_of_an_event_in_flight_waits_for_it(ledger: Ledger) -> None:
    [(first, _), (second, _)] = ledger.deliveries.record([cancel("one"), cancel("two")])
    held = claim(ledger, first.id)
    assert held is not None
    started = ledger.attempts.start(second.id, lease=30, slot=Slot("free", 1e6, 60))
    assert started.kind is Start.EVENT_BUSY and started.waiting_for == first.id
    assert started.delivery is not None and started.delivery.status == "pending"
    # Not claimed, not due before the first one's lease ends.
    assert started.at is not None and held.lease_until is not None
    assert started.at == held.lease_until.timestamp()
    assert claim(ledger, None) is None


def test_ensure_schema_from_four_at_once(empty_database_url: str) -> None:
    run_together(empty_database_url, 4, lambda led: led.ensure_schema())
    assert version_rows(empty_database_url) == sorted(migrate.head_revisions())
    led = Ledger(empty_database_url)
    try:
        [(_, created)] = led.deliveries.record([cancel("after-race")])
        assert created
    finally:
        led.dispose()


def test_constructing_does_not_connect_and_repr_hides_password() -> None:
    led = Ledger("postgresql://bridge:s3cret@127.0.0.1:1/ledger")
    try:
        assert "s3cret" not in repr(led)
        assert "127.0.0.1:1/ledger" in repr(led)
    finally:
        led.dispose()


def test_relative_sqlite_path_gets_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    led = Ledger("sqlite:///instance/bridge.db")
    try:
        led.ensure_schema()
        assert (tmp_path / "instance" / "bridge.db").is_file()
    finally:
        led.dispose()


# -- recording --------------------------------------------------------------------------


def test_record_returns_existing_rows_for_duplicates(ledger: Ledger) -> None:
    first = ledger.deliveries.record([cancel("evt-1", 0), cancel("evt-1", 1)])
    assert [created for _, created in first] == [True, True]
    d0 = first[0][0]
    assert d0.id.startswith("dlv_") and len(d0.id) >= 4 + 22
    assert d0.status == "pending" and d0.attempts == 0 and not d0.sent and not d0.final
    assert d0.created_at.tzinfo is not None and d0.created_at.utcoffset() == timedelta(0)
    assert d0.expires_at - d0.created_at == timedelta(days=1)

    again = ledger.deliveries.record([cancel("evt-1", 0), cancel("evt-1", 1), cancel("evt-1", 2)])
    assert [created for _, created in again] == [False, False, True]
    assert [d.id for d, _ in again[:2]] == [d.id for d, _ in first]
    assert [d.seq for d in ledger.deliveries.find("crm", "evt-1")] == [0, 1, 2]
    assert ledger.deliveries.find("other-route", "evt-1") == []


def test_record_stores_items_decided_at_mapping_time(ledger: Ledger) -> None:
    [(ignored, _), (broken, _)] = ledger.deliveries.record(
        [
            NewDelivery(
                route="crm",
                idempotency_key="x",
                status="ignored",
                outcome="ignored",
                error={"reason": "stage is not lost"},
            ),
            NewDelivery(
                route="crm",
                idempotency_key="x",
                seq=1,
                status="failed",
                outcome="mapping_error",
                error={"errors": {"event_id": ["missing"]}},
            ),
        ]
    )
    assert ignored.final and ignored.error == {"reason": "stage is not lost"}
    assert broken.final and broken.error == {"errors": {"event_id": ["missing"]}}
    assert claim(ledger, ignored.id) is None
    assert claim(ledger, None) is None


def test_record_is_all_or_nothing(ledger: Ledger) -> None:
    with pytest.raises(ValueError):
        ledger.deliveries.record([cancel("batch", 0), cancel("batch", 1, status="bogus")])
    assert ledger.deliveries.find("crm", "batch") == []


def test_concurrent_identical_records_create_once(database_url: str, ledger: Ledger) -> None:
    results = run_together(
        database_url, 4, lambda led: led.deliveries.record([cancel("dup", 0), cancel("dup", 1)])
    )
    for seq in (0, 1):
        assert len({r[seq][0].id for r in results}) == 1
        assert sum(r[seq][1] for r in results) == 1
    assert len(ledger.deliveries.find("crm", "dup")) == 2


# -- claiming ---------------------------------------------------------------------------


def test_claim_respects_live_leases_and_takes_expired_ones(ledger: Ledger) -> None:
    [(d, _)] = ledger.deliveries.record([cancel("lease")])
    claimed = claim(ledger, d.id)
    assert claimed is not None and claimed.status == "in_flight"
    assert claimed.lease_until is not None and claimed.lease_until > datetime.now(UTC)
    assert claim(ledger, d.id) is None  # someone holds it

    ledger.attempts.release(d.id)
    short = claim(ledger, d.id, lease=0)  # a lease that is already over: its holder died
    assert short is not None
    retaken = claim(ledger, d.id)
    assert retaken is not None and retaken.lease_until is not None
    with pytest.raises(KeyError):
        claim(ledger, "dlv_unknown")


def test_claim_due_skips_future_retries_and_takes_expired_leases(ledger: Ledger) -> None:
    rows = [d for d, _ in ledger.deliveries.record([cancel("due", i) for i in range(3)])]
    later = time.time() + 3600
    assert claim(ledger, rows[0].id, lease=1) is not None
    complete(
        ledger,
        rows[0].id,
        "failed",
        None,
        next_attempt_at=later,
        last_error="MeetBit answered 503",
    )
    assert claim(ledger, rows[1].id, lease=0) is not None  # lease already expired
    assert claim(ledger, rows[2].id, lease=60) is not None  # live lease

    due = claim(ledger, None)
    assert due is not None and due.id == rows[1].id
    assert due.status == "in_flight"
    assert claim(ledger, None) is None
    # A sender's retry may still attempt the failed one at once.
    assert claim(ledger, rows[0].id) is not None


def test_claim_due_never_hands_a_row_to_two_claimers(database_url: str, ledger: Ledger) -> None:
    for batch in range(8):
        # Each of a different event: two deliveries of one event are never in flight together.
        items = [replace(cancel(f"q{batch}", i), event_id=1000 + 10 * batch + i) for i in range(5)]
        ledger.deliveries.record(items)

    def drain(led: Ledger) -> list[str]:
        got: list[str] = []
        while (d := claim(led, None, lease=60)) is not None:
            got.append(d.id)
        return got

    claimed = [i for got in run_together(database_url, 4, drain) for i in got]
    assert len(claimed) == 40
    assert len(set(claimed)) == 40
    assert ledger.queries.counts_by_status()["in_flight"] == 40


# -- transitions ------------------------------------------------------------------------


def test_attempt_lifecycle(ledger: Ledger) -> None:
    [(d, _)] = ledger.deliveries.record([cancel("life")])
    first = attempt(ledger, d.id)
    assert (first.attempts, first.sent) == (0, False)  # as claimed, before it counted
    retry_at = datetime.now(UTC) + timedelta(seconds=30)
    failed = complete(
        ledger,
        d.id,
        "failed",
        None,
        meetbit_status=503,
        error={"title": "unavailable"},
        last_error="503 from MeetBit",
        next_attempt_at=retry_at.timestamp(),
    )
    assert (failed.attempts, failed.sent, failed.final) == (1, True, False)
    assert failed.lease_until is None and failed.next_attempt_at == retry_at
    assert failed.meetbit_status == 503 and failed.last_error == "503 from MeetBit"

    second = attempt(ledger, d.id)
    assert (second.attempts, second.sent) == (1, True)
    event = {"id": 345, "calendar_id": 12, "status": "canceled", "note": "deal lost"}
    done = complete(ledger, d.id, "succeeded", "canceled", meetbit_status=200, event=event)
    assert done.final and done.attempts == 2 and done.event == event and done.error is None
    assert ledger.deliveries.get(d.id) == done
    assert claim(ledger, d.id) is None
    assert ledger.deliveries.replay(d.id) == done  # a success is never re-run


def test_release_does_not_count_an_attempt(ledger: Ledger) -> None:
    [(d, _)] = ledger.deliveries.record([cancel("rel")])
    assert claim(ledger, d.id) is not None
    later = datetime.now(UTC) + timedelta(seconds=5)
    ledger.attempts.release(d.id, next_attempt_at=later.timestamp())
    back = ledger.deliveries.get(d.id)
    assert back is not None
    assert (back.status, back.attempts, back.lease_until, back.next_attempt_at) == (
        "pending",
        0,
        None,
        later,
    )
    assert claim(ledger, None) is None


def test_replay_requeues_dead_and_failed(ledger: Ledger) -> None:
    [(d, _)] = ledger.deliveries.record([cancel("dead", max_age=60)])
    for _ in range(3):
        attempt(ledger, d.id)
        complete(ledger, d.id, "failed", None, last_error="timeout")
    assert claim(ledger, d.id) is not None
    dead = complete(ledger, d.id, "dead", "failed", last_error="gave up")
    assert dead.final and dead.attempts == 3

    before = datetime.now(UTC)
    again = ledger.deliveries.replay(d.id)
    assert again is not None and not again.final
    assert (again.status, again.outcome, again.attempts) == ("pending", None, 0)
    assert again.expires_at >= before + timedelta(seconds=60)
    assert again.next_attempt_at is not None and again.next_attempt_at <= datetime.now(UTC)
    due = claim(ledger, None)
    assert due is not None and due.id == d.id
    assert ledger.deliveries.replay("dlv_nope") is None


def test_replay_leaves_mapping_errors_alone(ledger: Ledger) -> None:
    [(d, _)] = ledger.deliveries.record(
        [NewDelivery(route="crm", idempotency_key="m", status="failed", outcome="mapping_error")]
    )
    assert ledger.deliveries.replay(d.id) == d


# -- listing and housekeeping -----------------------------------------------------------


def test_list_filters_and_paginates_120_rows(ledger: Ledger) -> None:
    start = datetime.now(UTC)
    for i in range(40):
        ledger.deliveries.record(
            [
                cancel(f"a{i}"),
                NewDelivery(route="desk", idempotency_key=f"b{i}"),
                NewDelivery(
                    route="desk", idempotency_key=f"c{i}", status="ignored", outcome="ignored"
                ),
            ]
        )
    seen: list[Delivery] = []
    cursor: str | None = None
    pages = 0
    while True:
        page, cursor = ledger.queries.deliveries(cursor=cursor, limit=25)
        seen.extend(page)
        pages += 1
        if cursor is None:
            break
    assert pages == 5 and len(seen) == 120 and len({d.id for d in seen}) == 120
    stamps = [d.created_at for d in seen]
    assert stamps == sorted(stamps, reverse=True)
    assert seen[0].idempotency_key in {"a39", "b39", "c39"}

    ignored, nxt = ledger.queries.deliveries(status="ignored", limit=100)
    assert len(ignored) == 40 and nxt is None and {d.status for d in ignored} == {"ignored"}
    desk, _ = ledger.queries.deliveries(route="desk", limit=100)
    assert len(desk) == 80 and {d.route for d in desk} == {"desk"}
    pending_desk, _ = ledger.queries.deliveries(route="desk", status="pending", limit=100)
    assert len(pending_desk) == 40
    assert len(ledger.queries.deliveries(since=start, limit=500)[0]) == 120
    assert ledger.queries.deliveries(since=datetime.now(UTC), limit=500)[0] == []

    with pytest.raises(ValueError):
        ledger.queries.deliveries(cursor="not-a-cursor")
    with pytest.raises(ValueError):
        ledger.queries.deliveries(cursor="WyJ4Il0")  # valid base64 JSON, wrong shape


def test_purge_keeps_unfinished_work(ledger: Ledger) -> None:
    rows = [d for d, _ in ledger.deliveries.record([cancel("p", i) for i in range(4)])]
    complete(ledger, rows[0].id, "succeeded", "canceled")
    complete(ledger, rows[1].id, "dead", "failed")
    complete(ledger, rows[2].id, "failed", "failed", next_attempt_at=time.time())
    assert ledger.coordination.remember_webhook("wh_old")

    assert ledger.queries.purge(older_than=datetime.now(UTC) - timedelta(days=1)) == 0
    assert ledger.queries.purge(older_than=datetime.now(UTC) + timedelta(seconds=1)) == 2
    assert [d.id for d in ledger.deliveries.find("crm", "p")] == [rows[2].id, rows[3].id]
    assert ledger.coordination.remember_webhook("wh_old")  # its receipt was purged too


def test_counts_age_and_workers(ledger: Ledger) -> None:
    assert ledger.queries.oldest_pending_age() is None
    rows = [d for d, _ in ledger.deliveries.record([cancel("m", i) for i in range(3)])]
    complete(ledger, rows[0].id, "succeeded", "canceled")
    counts = ledger.queries.counts_by_status()
    assert counts == {
        "pending": 2,
        "in_flight": 0,
        "succeeded": 1,
        "failed": 0,
        "dead": 0,
        "ignored": 0,
    }
    age = ledger.queries.oldest_pending_age()
    assert age is not None and 0 <= age < 60

    assert ledger.coordination.workers_alive() == 0
    ledger.coordination.heartbeat("w1")
    ledger.coordination.heartbeat("w2")
    ledger.coordination.heartbeat("w1")
    assert ledger.coordination.workers_alive() == 2
    assert ledger.coordination.workers_alive(within=-1) == 0
    ledger.coordination.forget_worker("w1")
    assert ledger.coordination.workers_alive() == 1


# -- canceled events, links, webhook receipts -------------------------------------------


def test_canceled_events_never_lose_the_event(ledger: Ledger) -> None:
    assert ledger.canceled.find(12, 345) is None
    ledger.canceled.mark(12, 345, source="meetbit_webhook", event=None)
    first = ledger.canceled.find(12, 345)
    assert first is not None and first.event is None and first.source == "meetbit_webhook"

    event = {"id": 345, "status": "canceled"}
    ledger.canceled.mark(12, 345, source="bridge", event=event)
    ledger.canceled.mark(12, 345, source="bridge", event=None)
    record = ledger.canceled.find(12, 345)
    assert record is not None and record.event == event
    assert record.canceled_at == first.canceled_at
    assert ledger.canceled.find(12, 346) is None


def test_links(ledger: Ledger) -> None:
    assert ledger.links.put("ann@example.com", 12, 345)
    assert not ledger.links.put("ann@example.com", 12, 345)
    assert ledger.links.put("ann@example.com", 12, 346)
    assert ledger.links.put("bob@example.com", 7, 1)
    assert [(x.calendar_id, x.event_id) for x in ledger.links.get("ann@example.com")] == [
        (12, 345),
        (12, 346),
    ]
    assert ledger.links.get("nobody@example.com") == []

    for i in range(5):
        ledger.links.put(f"k{i}@example.com", 1, i)
    keys: list[tuple[str, int, int]] = []
    cursor: str | None = None
    while True:
        page, cursor = ledger.links.list(cursor=cursor, limit=3)
        keys.extend((x.key, x.calendar_id, x.event_id) for x in page)
        if cursor is None:
            break
    assert len(keys) == 8 and keys == sorted(set(keys))
    with pytest.raises(ValueError):
        ledger.links.list(cursor="@@@")

    assert ledger.links.delete("ann@example.com", event_id=346) == 1
    assert ledger.links.delete("ann@example.com") == 1
    assert ledger.links.delete("ann@example.com") == 0
    assert [x.key for x in ledger.links.get("bob@example.com")] == ["bob@example.com"]


def test_remember_webhook_dedupes_under_concurrency(database_url: str, ledger: Ledger) -> None:
    firsts = run_together(database_url, 6, lambda led: led.coordination.remember_webhook("wh_1"))
    assert sorted(firsts) == [False] * 5 + [True]
    assert not ledger.coordination.remember_webhook("wh_1")
    assert ledger.coordination.remember_webhook("wh_2")


# -- an unreachable database ------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres@127.0.0.1:1/bridge?connect_timeout=2",
        "sqlite:////dev/null/ledger/bridge.db",
    ],
    ids=["postgres-refused", "sqlite-unwritable"],
)
def test_unreachable_ledger_is_unavailable(url: str) -> None:
    led = Ledger(url)
    started = time.monotonic()
    try:
        with pytest.raises(LedgerUnavailable) as info:
            led.ping()
        assert info.value.status == 503 and info.value.headers["Retry-After"]
        assert isinstance(info.value.__cause__, sa.exc.DBAPIError)
        with pytest.raises(LedgerUnavailable):
            led.ensure_schema()
        with pytest.raises(LedgerUnavailable):
            led.deliveries.record([cancel("lost")])
        with pytest.raises(LedgerUnavailable):
            led.rate.take(Slot("meetbit", 5.0, 1))
    finally:
        led.dispose()
    assert time.monotonic() - started < 5


def test_sqlite_wal_is_checkpointed_by_a_background_thread(tmp_path: Path) -> None:
    """No request pays for a checkpoint: commits only append to the WAL, and a background
    thread copies it into the database file soon after; dispose ends the thread."""
    path = tmp_path / "ledger.db"
    led = Ledger(f"sqlite:///{path}")
    led.ensure_schema()
    thread_name = f"ledger-wal-checkpoint {path}"

    def rows_in_database_file() -> int:
        # The file alone, without its -wal: what has been checkpointed so far.
        copy = tmp_path / "copy" / "ledger.db"
        copy.parent.mkdir(exist_ok=True)
        copy.write_bytes(path.read_bytes())
        with sqlite3.connect(copy) as conn:
            tables = conn.execute("SELECT name FROM sqlite_master WHERE name = 'deliveries'")
            if tables.fetchone() is None:
                return 0
            return int(conn.execute("SELECT count(*) FROM deliveries").fetchone()[0])

    try:
        led.deliveries.record([cancel(f"wal-{i}") for i in range(50)])
        deadline = time.monotonic() + 5
        while rows_in_database_file() < 50:
            assert time.monotonic() < deadline, "the WAL was not checkpointed"
            time.sleep(0.1)
        assert any(t.name == thread_name for t in threading.enumerate())
    finally:
        led.dispose()
    deadline = time.monotonic() + 5
    while any(t.name == thread_name for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the checkpoint thread outlived dispose"
        time.sleep(0.1)


def test_a_ledger_made_by_the_first_release_upgrades_with_its_data(empty_database_url: str) -> None:
    from alembic import command

    cfg = migrate.alembic_config(empty_database_url)
    led = Ledger(empty_database_url)
    try:
        with led.db.write() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0001")
        assert version_rows(empty_database_url) == ["0001"]
        # Written with the first release's columns only (today's code has more).
        values = new_row(cancel("from-0001"), datetime.now(UTC))
        with led.db.write() as conn:
            known = {c["name"] for c in sa.inspect(conn).get_columns("deliveries")}
            values = {k: v for k, v in values.items() if k in known}
            conn.execute(tables.deliveries.insert().values(**values))
        led.ensure_schema()
        assert version_rows(empty_database_url) == sorted(migrate.head_revisions())
        old = led.deliveries.get(values["id"])
        assert old is not None and old.idempotency_key == "from-0001"
        assert old.request_id is None and old.status == "pending"
        assert old.x_request_id is None
        assert led.attempts.history(old.id) == []
    finally:
        led.dispose()


def test_purge_removes_a_deliverys_attempts_with_it(ledger: Ledger) -> None:
    from bridge.ledger import AttemptRecord

    [(d, _)] = ledger.deliveries.record([cancel("purged")])
    attempt(ledger, d.id)
    at = datetime.now(UTC)
    ledger.attempts.complete(
        d.id,
        Completion("succeeded", "canceled", meetbit_status=200),
        attempt=AttemptRecord(1, "web test:1", at, at, sent=True),
    )
    assert len(ledger.attempts.history(d.id)) == 1
    assert ledger.queries.purge(older_than=datetime.now(UTC) + timedelta(seconds=1)) == 1
    with ledger.db.read() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM attempts")).scalar() == 0
