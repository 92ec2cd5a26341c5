"""The ledger on a real SQLite file and a real PostgreSQL database: schema, delivery queue,
canceled events, links, webhook receipts and failure to reach the database."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
import sqlalchemy as sa

from bridge.errors import LedgerUnavailable
from bridge.ledger import Delivery, Ledger, NewDelivery
from bridge.ledger.db import normalize_url

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


# -- schema -----------------------------------------------------------------------------


def test_upgrade_twice_keeps_data_and_one_version(database_url: str) -> None:
    led = Ledger(database_url)
    try:
        led.upgrade()
        [(stored, created)] = led.record([cancel("k1")])
        assert created
        led.upgrade()
        led.ensure_schema()
        assert led.get(stored.id) == stored
        assert version_rows(database_url) == ["0001"]
    finally:
        led.dispose()


def test_ensure_schema_from_four_at_once(database_url: str) -> None:
    run_together(database_url, 4, lambda led: led.ensure_schema())
    assert version_rows(database_url) == ["0001"]
    led = Ledger(database_url)
    try:
        [(_, created)] = led.record([cancel("after-race")])
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
    first = ledger.record([cancel("evt-1", 0), cancel("evt-1", 1)])
    assert [created for _, created in first] == [True, True]
    d0 = first[0][0]
    assert d0.id.startswith("dlv_") and len(d0.id) >= 4 + 22
    assert d0.status == "pending" and d0.attempts == 0 and not d0.sent and not d0.final
    assert d0.created_at.tzinfo is not None and d0.created_at.utcoffset() == timedelta(0)
    assert d0.expires_at - d0.created_at == timedelta(days=1)

    again = ledger.record([cancel("evt-1", 0), cancel("evt-1", 1), cancel("evt-1", 2)])
    assert [created for _, created in again] == [False, False, True]
    assert [d.id for d, _ in again[:2]] == [d.id for d, _ in first]
    assert [d.seq for d in ledger.find("crm", "evt-1")] == [0, 1, 2]
    assert ledger.find("other-route", "evt-1") == []


def test_record_stores_items_decided_at_mapping_time(ledger: Ledger) -> None:
    [(ignored, _), (broken, _)] = ledger.record(
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
    assert ledger.claim(ignored.id, lease=30) is None
    assert ledger.claim_due(limit=10, lease=30) == []


def test_record_is_all_or_nothing(ledger: Ledger) -> None:
    with pytest.raises(ValueError):
        ledger.record([cancel("batch", 0), cancel("batch", 1, status="bogus")])
    assert ledger.find("crm", "batch") == []


def test_concurrent_identical_records_create_once(database_url: str, ledger: Ledger) -> None:
    results = run_together(
        database_url, 4, lambda led: led.record([cancel("dup", 0), cancel("dup", 1)])
    )
    for seq in (0, 1):
        assert len({r[seq][0].id for r in results}) == 1
        assert sum(r[seq][1] for r in results) == 1
    assert len(ledger.find("crm", "dup")) == 2


# -- claiming ---------------------------------------------------------------------------


def test_claim_respects_live_leases_and_takes_expired_ones(ledger: Ledger) -> None:
    [(d, _)] = ledger.record([cancel("lease")])
    claimed = ledger.claim(d.id, lease=30)
    assert claimed is not None and claimed.status == "in_flight"
    assert claimed.lease_until is not None and claimed.lease_until > datetime.now(UTC)
    assert ledger.claim(d.id, lease=30) is None  # someone holds it

    ledger.release(d.id)
    short = ledger.claim(d.id, lease=0)  # a lease that is already over: its holder died
    assert short is not None
    retaken = ledger.claim(d.id, lease=30)
    assert retaken is not None and retaken.lease_until is not None
    assert ledger.claim("dlv_unknown", lease=30) is None


def test_claim_due_skips_future_retries_and_takes_expired_leases(ledger: Ledger) -> None:
    rows = [d for d, _ in ledger.record([cancel("due", i) for i in range(3)])]
    later = datetime.now(UTC) + timedelta(hours=1)
    assert ledger.claim(rows[0].id, lease=1) is not None
    ledger.complete(
        rows[0].id,
        status="failed",
        outcome="failed",
        next_attempt_at=later,
        last_error="MeetBit answered 503",
    )
    assert ledger.claim(rows[1].id, lease=0) is not None  # lease already expired
    assert ledger.claim(rows[2].id, lease=60) is not None  # live lease

    due = ledger.claim_due(limit=10, lease=30)
    assert [d.id for d in due] == [rows[1].id]
    assert due[0].status == "in_flight"
    # A sender's retry may still attempt the failed one at once.
    assert ledger.claim(rows[0].id, lease=30) is not None


def test_claim_due_never_hands_a_row_to_two_claimers(database_url: str, ledger: Ledger) -> None:
    for batch in range(8):
        ledger.record([cancel(f"q{batch}", i) for i in range(5)])

    def drain(led: Ledger) -> list[str]:
        got: list[str] = []
        while batch := led.claim_due(limit=3, lease=60):
            got.extend(d.id for d in batch)
        return got

    claimed = [i for got in run_together(database_url, 4, drain) for i in got]
    assert len(claimed) == 40
    assert len(set(claimed)) == 40
    assert ledger.counts_by_status()["in_flight"] == 40


# -- transitions ------------------------------------------------------------------------


def test_attempt_lifecycle(ledger: Ledger) -> None:
    [(d, _)] = ledger.record([cancel("life")])
    assert ledger.claim(d.id, lease=30) is not None
    ledger.mark_sent(d.id)
    retry_at = datetime.now(UTC) + timedelta(seconds=30)
    failed = ledger.complete(
        d.id,
        status="failed",
        outcome="failed",
        meetbit_status=503,
        error={"title": "unavailable"},
        last_error="503 from MeetBit",
        next_attempt_at=retry_at,
    )
    assert (failed.attempts, failed.sent, failed.final) == (1, True, False)
    assert failed.lease_until is None and failed.next_attempt_at == retry_at
    assert failed.meetbit_status == 503 and failed.last_error == "503 from MeetBit"

    assert ledger.claim(d.id, lease=30) is not None
    ledger.mark_sent(d.id)
    event = {"id": 345, "calendar_id": 12, "status": "canceled", "note": "deal lost"}
    done = ledger.complete(
        d.id, status="succeeded", outcome="canceled", meetbit_status=200, event=event
    )
    assert done.final and done.attempts == 2 and done.event == event and done.error is None
    assert ledger.get(d.id) == done
    assert ledger.claim(d.id, lease=30) is None
    assert ledger.replay(d.id) == done  # a success is never re-run


def test_release_does_not_count_an_attempt(ledger: Ledger) -> None:
    [(d, _)] = ledger.record([cancel("rel")])
    assert ledger.claim(d.id, lease=30) is not None
    later = datetime.now(UTC) + timedelta(seconds=5)
    ledger.release(d.id, next_attempt_at=later)
    back = ledger.get(d.id)
    assert back is not None
    assert (back.status, back.attempts, back.lease_until, back.next_attempt_at) == (
        "pending",
        0,
        None,
        later,
    )
    assert ledger.claim_due(limit=5, lease=30) == []


def test_replay_requeues_dead_and_failed(ledger: Ledger) -> None:
    [(d, _)] = ledger.record([cancel("dead", max_age=60)])
    for _ in range(3):
        assert ledger.claim(d.id, lease=30) is not None
        ledger.mark_sent(d.id)
        ledger.complete(d.id, status="failed", outcome="failed", last_error="timeout")
    assert ledger.claim(d.id, lease=30) is not None
    dead = ledger.complete(d.id, status="dead", outcome="failed", last_error="gave up")
    assert dead.final and dead.attempts == 3

    before = datetime.now(UTC)
    again = ledger.replay(d.id)
    assert again is not None and not again.final
    assert (again.status, again.outcome, again.attempts) == ("pending", None, 0)
    assert again.expires_at >= before + timedelta(seconds=60)
    assert again.next_attempt_at is not None and again.next_attempt_at <= datetime.now(UTC)
    assert [x.id for x in ledger.claim_due(limit=5, lease=30)] == [d.id]
    assert ledger.replay("dlv_nope") is None


def test_replay_leaves_mapping_errors_alone(ledger: Ledger) -> None:
    [(d, _)] = ledger.record(
        [NewDelivery(route="crm", idempotency_key="m", status="failed", outcome="mapping_error")]
    )
    assert ledger.replay(d.id) == d


# -- listing and housekeeping -----------------------------------------------------------


def test_list_filters_and_paginates_120_rows(ledger: Ledger) -> None:
    start = datetime.now(UTC)
    for i in range(40):
        ledger.record(
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
        page, cursor = ledger.list(cursor=cursor, limit=25)
        seen.extend(page)
        pages += 1
        if cursor is None:
            break
    assert pages == 5 and len(seen) == 120 and len({d.id for d in seen}) == 120
    stamps = [d.created_at for d in seen]
    assert stamps == sorted(stamps, reverse=True)
    assert seen[0].idempotency_key in {"a39", "b39", "c39"}

    ignored, nxt = ledger.list(status="ignored", limit=100)
    assert len(ignored) == 40 and nxt is None and {d.status for d in ignored} == {"ignored"}
    desk, _ = ledger.list(route="desk", limit=100)
    assert len(desk) == 80 and {d.route for d in desk} == {"desk"}
    pending_desk, _ = ledger.list(route="desk", status="pending", limit=100)
    assert len(pending_desk) == 40
    assert len(ledger.list(since=start, limit=500)[0]) == 120
    assert ledger.list(since=datetime.now(UTC), limit=500)[0] == []

    with pytest.raises(ValueError):
        ledger.list(cursor="not-a-cursor")
    with pytest.raises(ValueError):
        ledger.list(cursor="WyJ4Il0")  # valid base64 JSON, wrong shape


def test_purge_keeps_unfinished_work(ledger: Ledger) -> None:
    rows = [d for d, _ in ledger.record([cancel("p", i) for i in range(4)])]
    ledger.complete(rows[0].id, status="succeeded", outcome="canceled")
    ledger.complete(rows[1].id, status="dead", outcome="failed")
    ledger.complete(
        rows[2].id, status="failed", outcome="failed", next_attempt_at=datetime.now(UTC)
    )
    assert ledger.remember_webhook("wh_old")

    assert ledger.purge(older_than=datetime.now(UTC) - timedelta(days=1)) == 0
    assert ledger.purge(older_than=datetime.now(UTC) + timedelta(seconds=1)) == 2
    assert [d.id for d in ledger.find("crm", "p")] == [rows[2].id, rows[3].id]
    assert ledger.remember_webhook("wh_old")  # its receipt was purged too


def test_counts_age_and_workers(ledger: Ledger) -> None:
    assert ledger.oldest_pending_age() is None
    rows = [d for d, _ in ledger.record([cancel("m", i) for i in range(3)])]
    ledger.complete(rows[0].id, status="succeeded", outcome="canceled")
    counts = ledger.counts_by_status()
    assert counts == {
        "pending": 2,
        "in_flight": 0,
        "succeeded": 1,
        "failed": 0,
        "dead": 0,
        "ignored": 0,
    }
    age = ledger.oldest_pending_age()
    assert age is not None and 0 <= age < 60

    assert ledger.workers_alive() == 0
    ledger.heartbeat("w1")
    ledger.heartbeat("w2")
    ledger.heartbeat("w1")
    assert ledger.workers_alive() == 2
    assert ledger.workers_alive(within=-1) == 0
    ledger.forget_worker("w1")
    assert ledger.workers_alive() == 1


# -- canceled events, links, webhook receipts -------------------------------------------


def test_canceled_events_never_lose_the_event(ledger: Ledger) -> None:
    assert ledger.canceled_event(12, 345) is None
    ledger.mark_canceled(12, 345, source="meetbit_webhook", event=None)
    first = ledger.canceled_event(12, 345)
    assert first is not None and first.event is None and first.source == "meetbit_webhook"

    event = {"id": 345, "status": "canceled"}
    ledger.mark_canceled(12, 345, source="bridge", event=event)
    ledger.mark_canceled(12, 345, source="bridge", event=None)
    record = ledger.canceled_event(12, 345)
    assert record is not None and record.event == event
    assert record.canceled_at == first.canceled_at
    assert ledger.canceled_event(12, 346) is None


def test_links(ledger: Ledger) -> None:
    assert ledger.put_link("ann@example.com", 12, 345)
    assert not ledger.put_link("ann@example.com", 12, 345)
    assert ledger.put_link("ann@example.com", 12, 346)
    assert ledger.put_link("bob@example.com", 7, 1)
    assert [(x.calendar_id, x.event_id) for x in ledger.links("ann@example.com")] == [
        (12, 345),
        (12, 346),
    ]
    assert ledger.links("nobody@example.com") == []

    for i in range(5):
        ledger.put_link(f"k{i}@example.com", 1, i)
    keys: list[tuple[str, int, int]] = []
    cursor: str | None = None
    while True:
        page, cursor = ledger.list_links(cursor=cursor, limit=3)
        keys.extend((x.key, x.calendar_id, x.event_id) for x in page)
        if cursor is None:
            break
    assert len(keys) == 8 and keys == sorted(set(keys))
    with pytest.raises(ValueError):
        ledger.list_links(cursor="@@@")

    assert ledger.delete_links("ann@example.com", event_id=346) == 1
    assert ledger.delete_links("ann@example.com") == 1
    assert ledger.delete_links("ann@example.com") == 0
    assert [x.key for x in ledger.links("bob@example.com")] == ["bob@example.com"]


def test_remember_webhook_dedupes_under_concurrency(database_url: str, ledger: Ledger) -> None:
    firsts = run_together(database_url, 6, lambda led: led.remember_webhook("wh_1"))
    assert sorted(firsts) == [False] * 5 + [True]
    assert not ledger.remember_webhook("wh_1")
    assert ledger.remember_webhook("wh_2")


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
            led.record([cancel("lost")])
        with pytest.raises(LedgerUnavailable):
            led.reserve_slot("meetbit", interval=0.2, max_wait=1)
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
        led.record([cancel(f"wal-{i}") for i in range(50)])
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
