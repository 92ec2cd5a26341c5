"""The domain's reading of an attempt's result, without a server or a database."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from bridge.core.delivery import (
    Delivery,
    Failure,
    FailureKind,
    RetryPolicy,
    Status,
    canceled,
    classify,
)

NOW = 1_800_000_000.0
POLICY = RetryPolicy(backoff_base=5.0, backoff_cap=60.0)


def claimed(*, attempts: int = 0, sent: bool = False, max_attempts: int = 10) -> Delivery:
    created = datetime.fromtimestamp(NOW - 60, UTC)
    return Delivery(
        id="dlv_x", route="r", idempotency_key="k", seq=0, calendar_id=1, event_id=2,
        note="n", status="in_flight", outcome=None, attempts=attempts,
        max_attempts=max_attempts, created_at=created, updated_at=created,
        expires_at=created + timedelta(hours=24), next_attempt_at=None, lease_until=None,
        last_error=None, meetbit_status=None, event=None, error=None, sent=sent,
    )  # fmt: skip


def failure(kind: FailureKind, **kw: object) -> Failure:
    return Failure(kind=kind, reason=kind.value, detail="it failed", **kw)  # type: ignore[arg-type]


def test_a_first_404_is_definite_and_a_404_after_a_sent_attempt_is_our_own_cancel() -> None:
    first = classify(failure(FailureKind.NOT_FOUND, status=404), claimed(), POLICY, now=NOW)
    assert (first.status, first.outcome, first.sent, first.canceled) == (
        Status.FAILED, "not_found", False, False,
    )  # fmt: skip
    again = classify(failure(FailureKind.NOT_FOUND), claimed(sent=True), POLICY, now=NOW)
    assert (again.status, again.outcome, again.canceled) == (
        Status.SUCCEEDED, "already_canceled", True,
    )  # fmt: skip


def test_a_rejected_request_is_final_with_meetbits_field_errors() -> None:
    errors = {"cancel_note": ["too long"]}
    done = classify(
        failure(FailureKind.REJECTED, status=400, errors=errors), claimed(), POLICY, now=NOW
    )
    assert (done.status, done.outcome, done.error) == (
        Status.FAILED,
        "rejected",
        {"errors": errors},
    )
    assert done.next_attempt_at is None


def test_a_429_pauses_everyone_and_retries_after_it() -> None:
    done = classify(
        failure(FailureKind.RATE_LIMITED, status=429, retry_after=3.0, reached=True),
        claimed(),
        POLICY,
        now=NOW,
    )
    assert done.pause_until == NOW + 3.0
    assert done.next_attempt_at is not None and NOW + 3.0 <= done.next_attempt_at <= NOW + 8.0
    # MeetBit did nothing: the request is not counted as one that may have canceled.
    assert (done.status, done.sent) == (Status.FAILED, False)


@pytest.mark.parametrize("reached", [True, False])
def test_a_transient_failure_keeps_the_doubt_of_a_request_that_may_have_run(
    reached: bool,
) -> None:
    done = classify(failure(FailureKind.TRANSIENT, reached=reached), claimed(), POLICY, now=NOW)
    assert done.sent is reached and done.outcome is None and done.pause_until is None
    refused = classify(
        failure(FailureKind.REFUSED, status=401, reached=True), claimed(), POLICY, now=NOW
    )
    assert refused.sent is False and refused.status == Status.FAILED


def test_the_deliverys_own_budget_decides_dead() -> None:
    last = claimed(attempts=2, max_attempts=3)
    done = classify(failure(FailureKind.TRANSIENT), last, POLICY, now=NOW)
    assert (done.status, done.outcome, done.next_attempt_at) == (Status.DEAD, "failed", None)
    old = claimed()
    late = classify(failure(FailureKind.TRANSIENT), old, POLICY, now=NOW + 48 * 3600)
    assert late.status == Status.DEAD


def test_backoff_is_full_jitter_and_reproducible_with_a_seed() -> None:
    a = [POLICY.backoff(n, random.Random(7)) for n in range(1, 8)]
    b = [POLICY.backoff(n, random.Random(7)) for n in range(1, 8)]
    assert a == b
    assert all(0 <= s <= min(60.0, 5.0 * 2 ** (n - 1)) for n, s in enumerate(a, start=1))


def test_a_cancel_records_the_event_as_canceled() -> None:
    done = canceled({"id": 2})
    assert (done.status, done.outcome, done.meetbit_status, done.canceled) == (
        Status.SUCCEEDED, "canceled", 200, True,
    )  # fmt: skip
