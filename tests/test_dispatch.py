"""One delivery through the Dispatcher: ledger rows, the shared slot and MeetBit's answers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from bridge.delivery.dispatch import RATE_KEY, Dispatcher, backoff
from bridge.ledger import Delivery, Ledger, NewDelivery
from bridge.meetbit import MeetBitClient

MISSING = 900_123


@pytest.fixture
def dispatcher(ledger: Ledger, sandbox: Any) -> Iterator[Dispatcher]:
    client = MeetBitClient(
        sandbox.url, sandbox.config.key_id, sandbox.config.key_secret, timeout=(1.0, 2.0)
    )
    yield Dispatcher(ledger, client, rate=1000, timeout=(1.0, 2.0), retry_backoff=(0.5, 2.0))
    client.close()


def record(ledger: Ledger, event_id: int, *, key: str | None = None, **kw: Any) -> Delivery:
    row = NewDelivery(
        route="r", idempotency_key=key or f"k{event_id}", calendar_id=1, event_id=event_id,
        note="bye", **kw,
    )  # fmt: skip
    ((delivery, created),) = ledger.record([row])
    assert created
    return delivery


def test_a_cancel_is_recorded_with_the_event(dispatcher: Dispatcher, ledger: Ledger) -> None:
    attempt = dispatcher.run(record(ledger, 10), deadline=time.time() + 5)
    d = attempt.delivery
    assert (d.status, d.outcome, d.meetbit_status, d.attempts) == ("succeeded", "canceled", 200, 1)
    assert d.event is not None and d.event["cancel_note"] == "bye"
    assert ledger.canceled_event(1, 10) is not None


def test_a_replayed_not_found_is_still_not_found(
    dispatcher: Dispatcher, ledger: Ledger, sandbox: Any
) -> None:
    first = dispatcher.run(record(ledger, MISSING), deadline=time.time() + 5).delivery
    assert (first.status, first.outcome) == ("failed", "not_found")
    again = ledger.replay(first.id)
    assert again is not None
    second = dispatcher.run(again, deadline=time.time() + 5).delivery
    # MeetBit's first 404 was definite; the second one must not pass for our own cancel.
    assert (second.status, second.outcome) == ("failed", "not_found")
    assert [c["status"] for c in sandbox.calls()] == [404, 404]


def test_a_429_pauses_every_process_and_schedules_the_retry_after_it(
    dispatcher: Dispatcher, ledger: Ledger, sandbox: Any
) -> None:
    sandbox.config.rate_limit = 1
    sandbox.config.retry_after = 3
    dispatcher.run(record(ledger, 20), deadline=time.time() + 5)
    before = time.time()
    d = dispatcher.run(record(ledger, 21), deadline=time.time() + 5).delivery
    assert (d.status, d.outcome, d.meetbit_status) == ("failed", None, 429)
    assert d.error == {"reason": "rate_limited"}
    assert d.next_attempt_at is not None
    assert d.next_attempt_at >= datetime.fromtimestamp(before + 3, UTC)
    # No process gets a slot before Retry-After has passed.
    assert ledger.next_slot(RATE_KEY) >= before + 3
    third = dispatcher.run(record(ledger, 22), deadline=time.time() + 1).delivery
    assert third.status == "pending" and third.attempts == 0
    assert [c["status"] for c in sandbox.calls()] == [200, 429]


def test_transient_failures_back_off_and_end_dead(
    dispatcher: Dispatcher, ledger: Ledger, sandbox: Any
) -> None:
    sandbox.config.failure_rate = 1.0
    d = record(ledger, 30, max_attempts=2)
    first = dispatcher.run(d, deadline=time.time() + 5).delivery
    assert (first.status, first.attempts, first.error) == ("failed", 1, {"reason": "server_error"})
    assert first.next_attempt_at is not None and first.final is False
    second = dispatcher.run(first, deadline=time.time() + 5).delivery
    assert (second.status, second.outcome, second.next_attempt_at) == ("dead", "failed", None)
    assert second.final


def test_a_delivery_held_elsewhere_is_reported_busy(
    dispatcher: Dispatcher, ledger: Ledger, sandbox: Any
) -> None:
    d = record(ledger, 40)
    assert ledger.claim(d.id, lease=30) is not None
    attempt = dispatcher.run(d, deadline=time.time() + 1)
    assert attempt.busy and attempt.delivery.status == "in_flight"
    assert sandbox.calls() == []


def test_an_event_canceled_through_meetbit_needs_no_call(
    dispatcher: Dispatcher, ledger: Ledger, sandbox: Any
) -> None:
    ledger.mark_canceled(1, 50, source="meetbit", event=None)
    d = dispatcher.run(record(ledger, 50), deadline=time.time() + 5).delivery
    assert (d.status, d.outcome, d.attempts) == ("succeeded", "already_canceled", 0)
    assert sandbox.calls() == []


def test_backoff_is_full_jitter_under_a_growing_cap() -> None:
    samples = [backoff(4, 5.0, 3600.0) for _ in range(200)]
    assert all(0 <= s <= 40.0 for s in samples)
    assert max(samples) > 20.0  # spread over the range, not a fixed delay
    assert all(backoff(30, 5.0, 60.0) <= 60.0 for _ in range(50))


def new(event_id: int, key: str | None = None) -> NewDelivery:
    return NewDelivery(
        route="r", idempotency_key=key or f"n{event_id}", calendar_id=1, event_id=event_id,
        note="bye",
    )  # fmt: skip


def test_record_and_run_records_before_it_calls_and_replays_without_a_call(
    dispatcher: Dispatcher, ledger: Ledger, sandbox: Any
) -> None:
    delivery, created, attempt = dispatcher.record_and_run(new(60), deadline=time.time() + 5)
    assert created and attempt is not None
    assert (attempt.delivery.status, attempt.delivery.outcome) == ("succeeded", "canceled")
    assert attempt.delivery.attempts == 1 and ledger.get(delivery.id) == attempt.delivery
    again, created, attempt = dispatcher.record_and_run(new(60), deadline=time.time() + 5)
    assert (again.id, created, attempt) == (delivery.id, False, None)
    assert len(sandbox.calls()) == 1


def test_record_and_run_settles_a_known_canceled_event_in_the_same_step(
    dispatcher: Dispatcher, ledger: Ledger, sandbox: Any
) -> None:
    ledger.mark_canceled(1, 61, source="meetbit", event=None)
    _, created, attempt = dispatcher.record_and_run(new(61), deadline=time.time() + 5)
    assert created and attempt is not None
    assert (attempt.delivery.outcome, attempt.delivery.attempts) == ("already_canceled", 0)
    assert sandbox.calls() == []


def test_record_and_run_during_a_pause_queues_with_nothing_sent(
    dispatcher: Dispatcher, ledger: Ledger, sandbox: Any
) -> None:
    ledger.pause_calls(RATE_KEY, until=time.time() + 30)
    _, created, attempt = dispatcher.record_and_run(new(62), deadline=time.time() + 2)
    assert created and attempt is not None and attempt.queued
    d = attempt.delivery
    assert (d.status, d.attempts, d.sent) == ("pending", 0, False)
    assert d.next_attempt_at is not None
    assert sandbox.calls() == []
