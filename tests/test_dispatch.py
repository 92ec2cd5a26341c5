"""One delivery through the Dispatcher: ledger rows, the shared slot and MeetBit's answers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from bridge.core.delivery import RetryPolicy
from bridge.delivery.dispatch import RATE_KEY, Attempt, Dispatcher
from bridge.ledger import Delivery, Ledger, NewDelivery, Slot
from bridge.meetbit import MeetBitClient

MISSING = 900_123


@pytest.fixture
def dispatcher(ledger: Ledger, sandbox: Any) -> Iterator[Dispatcher]:
    client = MeetBitClient(
        sandbox.url, sandbox.config.key_id, sandbox.config.key_secret, timeout=(1.0, 2.0)
    )
    yield Dispatcher(ledger, client, rate=1000, timeout=(1.0, 2.0), retry_backoff=(0.5, 2.0))
    client.close()


def run(dispatcher: Dispatcher, delivery: Delivery, *, deadline: float) -> Attempt:
    """One synchronous attempt of a stored delivery."""
    attempt = dispatcher.attempt(delivery.id, deadline=deadline)
    assert attempt is not None
    return attempt


def record(ledger: Ledger, event_id: int, *, key: str | None = None, **kw: Any) -> Delivery:
    row = NewDelivery(
        route="r", idempotency_key=key or f"k{event_id}", calendar_id=1, event_id=event_id,
        note="bye", **kw,
    )  # fmt: skip
    ((delivery, created),) = ledger.deliveries.record([row])
    assert created
    return delivery


def test_a_cancel_is_recorded_with_the_event(dispatcher: Dispatcher, ledger: Ledger) -> None:
    attempt = run(dispatcher, record(ledger, 10), deadline=time.time() + 5)
    d = attempt.delivery
    assert (d.status, d.outcome, d.meetbit_status, d.attempts) == ("succeeded", "canceled", 200, 1)
    assert d.event is not None and d.event["cancel_note"] == "bye"
    assert ledger.canceled.find(1, 10) is not None


def test_a_replayed_not_found_is_still_not_found(
    dispatcher: Dispatcher, ledger: Ledger, sandbox: Any
) -> None:
    first = run(dispatcher, record(ledger, MISSING), deadline=time.time() + 5).delivery
    assert (first.status, first.outcome) == ("failed", "not_found")
    again = ledger.deliveries.replay(first.id)
    assert again is not None
    second = run(dispatcher, again, deadline=time.time() + 5).delivery
    # MeetBit's first 404 was definite; the second one must not pass for our own cancel.
    assert (second.status, second.outcome) == ("failed", "not_found")
    assert [c["status"] for c in sandbox.calls()] == [404, 404]


def test_a_429_pauses_every_process_and_schedules_the_retry_after_it(
    dispatcher: Dispatcher, ledger: Ledger, sandbox: Any
) -> None:
    # Without rate-limit headers the bridge cannot know MeetBit's limit is 1/s (its own is
    # 1000/s): the second call meets a 429.
    sandbox.config.headers = "none"
    sandbox.config.rate_limit = 1
    sandbox.config.retry_after = 3
    # Counted over any one-second span: two calls at once could straddle a calendar second.
    sandbox.config.window = "sliding"
    run(dispatcher, record(ledger, 20), deadline=time.time() + 5)
    before = time.time()
    d = run(dispatcher, record(ledger, 21), deadline=time.time() + 5).delivery
    assert (d.status, d.outcome, d.meetbit_status) == ("failed", None, 429)
    assert d.error == {"reason": "rate_limited"}
    assert d.next_attempt_at is not None
    assert d.next_attempt_at >= datetime.fromtimestamp(before + 3, UTC)
    # No process gets a slot before Retry-After has passed.
    assert ledger.rate.next_slot(RATE_KEY) >= before + 3
    third = run(dispatcher, record(ledger, 22), deadline=time.time() + 1).delivery
    assert third.status == "pending" and third.attempts == 0
    assert [c["status"] for c in sandbox.calls()] == [200, 429]


def test_remaining_zero_holds_the_next_call_until_the_next_second(
    dispatcher: Dispatcher, ledger: Ledger, sandbox: Any
) -> None:
    # MeetBit's headers say 1/s: the bridge's own 1000/s is lowered, the second call waits for
    # the next calendar second instead of meeting a 429.
    sandbox.config.rate_limit = 1
    first = run(dispatcher, record(ledger, 23), deadline=time.time() + 5).delivery
    second = run(dispatcher, record(ledger, 24), deadline=time.time() + 5).delivery
    assert [d.outcome for d in (first, second)] == ["canceled", "canceled"]
    calls = sandbox.calls()
    assert [c["status"] for c in calls] == [200, 200]
    # The next second, or the one after when the first call went in a second's last moments
    # (it may have been counted in either, so it took a slot of both).
    assert int(calls[0]["at"]) + 1 <= int(calls[1]["at"]) <= int(calls[0]["at"]) + 2
    assert ledger.rate.state(RATE_KEY).heard == 1.0


def test_transient_failures_back_off_and_end_dead(
    dispatcher: Dispatcher, ledger: Ledger, sandbox: Any
) -> None:
    sandbox.config.failure_rate = 1.0
    d = record(ledger, 30, max_attempts=2)
    first = run(dispatcher, d, deadline=time.time() + 5).delivery
    assert (first.status, first.attempts, first.error) == ("failed", 1, {"reason": "server_error"})
    assert first.next_attempt_at is not None and first.final is False
    second = run(dispatcher, first, deadline=time.time() + 5).delivery
    assert (second.status, second.outcome, second.next_attempt_at) == ("dead", "failed", None)
    assert second.final


def test_a_delivery_held_elsewhere_is_reported_busy(
    dispatcher: Dispatcher, ledger: Ledger, sandbox: Any
) -> None:
    d = record(ledger, 40)
    # Another process's attempt: claimed, its slot reserved well ahead.
    ledger.rate.pause("elsewhere", until=time.time() + 60)
    held = ledger.attempts.start(d.id, lease=30, slot=Slot("elsewhere", 1.0, 120))
    assert held.delivery is not None and held.delivery.status == "in_flight"
    attempt = run(dispatcher, d, deadline=time.time() + 1)
    assert attempt.busy and attempt.delivery.status == "in_flight"
    assert sandbox.calls() == []


def test_an_event_canceled_through_meetbit_needs_no_call(
    dispatcher: Dispatcher, ledger: Ledger, sandbox: Any
) -> None:
    ledger.canceled.mark(1, 50, source="meetbit", event=None)
    d = run(dispatcher, record(ledger, 50), deadline=time.time() + 5).delivery
    assert (d.status, d.outcome, d.attempts) == ("succeeded", "already_canceled", 0)
    assert sandbox.calls() == []


def test_backoff_is_full_jitter_under_a_growing_cap() -> None:
    policy = RetryPolicy(backoff_base=5.0, backoff_cap=3600.0)
    samples = [policy.backoff(4) for _ in range(200)]
    assert all(0 <= s <= 40.0 for s in samples)
    assert max(samples) > 20.0  # spread over the range, not a fixed delay
    capped = RetryPolicy(backoff_base=5.0, backoff_cap=60.0)
    assert all(capped.backoff(30) <= 60.0 for _ in range(50))


def new(event_id: int, key: str | None = None) -> NewDelivery:
    return NewDelivery(
        route="r", idempotency_key=key or f"n{event_id}", calendar_id=1, event_id=event_id,
        note="bye",
    )  # fmt: skip


def test_a_new_cancel_records_before_it_calls_and_replays_without_a_call(
    dispatcher: Dispatcher, ledger: Ledger, sandbox: Any
) -> None:
    attempt = dispatcher.attempt(new(60), deadline=time.time() + 5)
    assert attempt is not None and attempt.created
    delivery = attempt.delivery
    assert (delivery.status, delivery.outcome) == ("succeeded", "canceled")
    assert delivery.attempts == 1 and ledger.deliveries.get(delivery.id) == delivery
    again = dispatcher.attempt(new(60), deadline=time.time() + 5)
    assert again is not None
    assert (again.delivery, again.created, again.replayed) == (delivery, False, True)
    assert len(sandbox.calls()) == 1


def test_a_new_cancel_settles_a_known_canceled_event_in_the_same_step(
    dispatcher: Dispatcher, ledger: Ledger, sandbox: Any
) -> None:
    ledger.canceled.mark(1, 61, source="meetbit", event=None)
    attempt = dispatcher.attempt(new(61), deadline=time.time() + 5)
    assert attempt is not None and attempt.created
    assert (attempt.delivery.outcome, attempt.delivery.attempts) == ("already_canceled", 0)
    assert sandbox.calls() == []


def test_a_new_cancel_during_a_pause_queues_with_nothing_sent(
    dispatcher: Dispatcher, ledger: Ledger, sandbox: Any
) -> None:
    ledger.rate.pause(RATE_KEY, until=time.time() + 30)
    attempt = dispatcher.attempt(new(62), deadline=time.time() + 2)
    assert attempt is not None and attempt.created and attempt.queued
    d = attempt.delivery
    assert (d.status, d.attempts, d.sent) == ("pending", 0, False)
    assert d.next_attempt_at is not None
    assert sandbox.calls() == []


def test_every_call_is_an_attempt_row_and_a_settled_one_is_not(
    dispatcher: Dispatcher, ledger: Ledger, sandbox: Any
) -> None:
    sandbox.config.failure_rate = 1.0
    d = record(ledger, 70)
    first = run(dispatcher, d, deadline=time.time() + 5).delivery
    sandbox.config.failure_rate = 0.0
    done = run(dispatcher, first, deadline=time.time() + 5).delivery
    assert (done.status, done.outcome, done.attempts) == ("succeeded", "canceled", 2)
    rows = ledger.attempts.history(d.id)
    assert [(r["number"], r["meetbit_status"], r["outcome"], r["error_kind"]) for r in rows] == [
        (1, 500, "failed", "server_error"),
        (2, 200, "canceled", None),
    ]
    assert all(r["process"].startswith("web ") and r["sent"] for r in rows)
    assert all(r["finished_at"] >= r["started_at"] for r in rows)
    # Known canceled now: the next delivery for the event is settled without a call or a row.
    again = run(dispatcher, record(ledger, 70, key="other"), deadline=time.time() + 5).delivery
    assert again.outcome == "already_canceled"
    assert ledger.attempts.history(again.id) == []


def test_the_worker_takes_the_next_due_delivery_through_the_same_path(
    dispatcher: Dispatcher, ledger: Ledger, sandbox: Any
) -> None:
    first, second = record(ledger, 80), record(ledger, 81)
    assert dispatcher.attempt(None, deadline=None, by="worker") is not None
    assert dispatcher.attempt(None, deadline=None, by="worker") is not None
    assert dispatcher.attempt(None, deadline=None, by="worker") is None  # nothing due
    for d in (first, second):
        done = ledger.deliveries.get(d.id)
        assert done is not None and done.outcome == "canceled"
        [row] = ledger.attempts.history(d.id)
        assert row["process"].startswith("worker ")
    assert [c["event_id"] for c in sandbox.calls()] == [80, 81]


class Stalling(MeetBitClient):
    """A process that stalls between taking its rate slot and sending, as a loaded host does:
    a real pause in this process before the real client sends (nothing of requests is faked)."""

    stalls = 1

    def cancel_event(self, *args: Any, send_by: float | None = None, **kw: Any) -> Any:
        if self.stalls and send_by is not None:
            self.stalls -= 1
            time.sleep(max(0.0, send_by - time.time()) + 0.05)
        return super().cancel_event(*args, send_by=send_by, **kw)


def test_a_call_that_missed_its_slot_sends_nothing_and_takes_a_new_one(
    ledger: Ledger, sandbox: Any
) -> None:
    sandbox.config.rate_limit = 5
    client = Stalling(sandbox.url, sandbox.config.key_id, sandbox.config.key_secret)
    dispatcher = Dispatcher(ledger, client, rate=None, timeout=(1.0, 2.0))
    try:
        d = run(dispatcher, record(ledger, 80), deadline=time.time() + 8).delivery
    finally:
        client.close()
    assert (d.status, d.outcome, d.attempts) == ("succeeded", "canceled", 1)
    # One call only: the stalled one was never sent, the new slot's call went out.
    assert [c["status"] for c in sandbox.calls()] == [200]
    assert ledger.attempts.history(d.id)[0]["outcome"] == "canceled"


def test_the_client_sends_nothing_past_send_by(sandbox: Any) -> None:
    from bridge.meetbit import MeetBitLate

    with MeetBitClient(sandbox.url, sandbox.config.key_id, sandbox.config.key_secret) as client:
        with pytest.raises(MeetBitLate) as info:
            client.cancel_event(1, 81, "bye", send_by=time.time() - 0.01)
    assert info.value.sent is False and info.value.reason == "late"
    assert sandbox.calls() == []
