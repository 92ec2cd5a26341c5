"""A delivery's states, outcomes and transitions: what one attempt's result means for the
delivery (`classify`), and when a failed one is tried again (`RetryPolicy`).

Plain data in, plain data out: the ledger stores what these functions decide, the dispatcher
feeds them what MeetBit answered, and neither decides anything of its own.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bridge.core.rate import Grant


class Status(enum.StrEnum):
    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DEAD = "dead"
    IGNORED = "ignored"


STATUSES = tuple(s.value for s in Status)
# A write-back job uses the delivery words, without `ignored`.
WRITE_BACK_STATUSES = tuple(s for s in STATUSES if s != Status.IGNORED)
# A delivery with one of these outcomes never makes another MeetBit call.
FINAL_OUTCOMES = frozenset(
    {"canceled", "already_canceled", "ignored", "not_found", "mapping_error", "rejected"}
)
# Statuses an attempt may start from (besides an in-flight row whose lease has expired).
RETRYABLE = (Status.PENDING.value, Status.FAILED.value)


@dataclass(frozen=True)
class NewDelivery:
    """One cancel command to record; items decided at mapping time carry their final state."""

    route: str
    idempotency_key: str
    seq: int = 0
    calendar_id: int | None = None
    event_id: int | None = None
    note: str | None = None
    status: str = Status.PENDING.value
    outcome: str | None = None
    error: dict[str, Any] | None = None
    max_attempts: int = 10
    max_age: float = 86400.0
    request_id: str | None = None  # the stored webhook request it came from
    # The route's write-backs, planned at intake (entries and the context their text reads);
    # kept with the row and acted on once the delivery is final.
    write_back: dict[str, Any] | None = None
    x_request_id: str | None = None  # the webhook's X-Request-Id
    traceparent: str | None = None  # the webhook's span (W3C), when tracing is on


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
    # The stored webhook request it came from (None for rows older than that record).
    request_id: str | None = None
    # The X-Request-Id of the webhook that recorded it (sent to MeetBit with every attempt).
    x_request_id: str | None = None
    # The webhook's span (W3C traceparent) when tracing is on: a worker attempt links to it.
    traceparent: str | None = None

    @property
    def final(self) -> bool:
        """True once no further MeetBit call will be made for this delivery."""
        return self.outcome in FINAL_OUTCOMES or self.status == Status.DEAD


class Start(enum.Enum):
    """How the one attempt primitive (`Deliveries.start`) left a delivery."""

    CALL = "call"  # claimed, slot starting now taken, marked sent: call MeetBit now
    WAIT = "wait"  # claimed, slot taken at `Started.at`: sleep, then confirm it
    NO_SLOT = "no_slot"  # not claimed: no slot in time; next attempt set to the next free slot
    SETTLED = "settled"  # the event is known canceled: completed `already_canceled`, no call
    EVENT_BUSY = "event_busy"  # not claimed: another delivery of the event is in flight
    BUSY = "busy"  # not claimable: in flight elsewhere, or final
    NOTHING_DUE = "nothing_due"  # the worker asked for the next due delivery: there is none


@dataclass(frozen=True)
class Started:
    """What `Deliveries.start` did in its one transaction.

    `delivery` is the row as claimed, before this attempt counted (its `sent` and `attempts`
    say what earlier attempts did); as settled for SETTLED; as stored for BUSY and NO_SLOT.
    `created` says whether the row was recorded by this call.
    """

    kind: Start
    delivery: Delivery | None
    created: bool = False
    at: float | None = None  # WAIT: the reserved start; NO_SLOT, EVENT_BUSY: when to try again
    waiting_for: str | None = None  # EVENT_BUSY: the delivery of the same event in flight
    grant: Grant | None = None  # CALL, WAIT: the rate slot taken (`bridge.core.rate`)


class FailureKind(enum.Enum):
    NOT_FOUND = "not_found"  # MeetBit: no such event (or, undocumented, already canceled)
    REJECTED = "rejected"  # MeetBit refused the request as invalid (400): never retried
    RATE_LIMITED = "rate_limited"  # 429: MeetBit did nothing; everyone waits
    REFUSED = "refused"  # our keys or their permission (401): MeetBit did nothing
    TRANSIENT = "transient"  # 5xx, timeout, connection, malformed answer: may have run


@dataclass(frozen=True)
class Failure:
    """A failed MeetBit call, as the domain needs it (the client's typed errors map onto it)."""

    kind: FailureKind
    reason: str
    detail: str
    status: int | None = None
    reached: bool = False  # the request may have reached MeetBit (and taken effect)
    retry_after: float | None = None
    errors: dict[str, list[str]] | None = None


@dataclass(frozen=True)
class Completion:
    """What an attempt's result writes onto its delivery, in one ledger transaction."""

    status: str
    outcome: str | None
    meetbit_status: int | None = None
    event: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    last_error: str | None = None
    next_attempt_at: float | None = None  # epoch seconds
    sent: bool | None = None  # replaces the may-have-reached-MeetBit flag when not None
    canceled: bool = False  # also record the event as canceled by the bridge
    pause_until: float | None = None  # hold every process's calls until then (epoch seconds)

    @property
    def error_kind(self) -> str | None:
        return None if self.error is None else self.error.get("reason")


@dataclass(frozen=True)
class RetryPolicy:
    """A route's retry budget (attempts, age) and the full-jitter exponential backoff. Each
    delivery keeps the budget it was recorded with (`max_attempts`, `expires_at`), so editing
    a route never changes what deliveries already stored may do."""

    max_attempts: int = 10
    max_age: float = 86400.0
    backoff_base: float = 5.0
    backoff_cap: float = 3600.0

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full jitter (AWS architecture blog): uniform over [0, min(cap, base * 2^(n-1))]."""
        ceiling = min(self.backoff_cap, self.backoff_base * 2 ** max(0, attempt - 1))
        return (rng or random).uniform(0, ceiling)


def canceled(event: dict[str, Any]) -> Completion:
    """MeetBit canceled the event and answered with it."""
    return Completion(
        status=Status.SUCCEEDED, outcome="canceled", meetbit_status=200, event=event, canceled=True
    )


def classify(
    failure: Failure,
    delivery: Delivery,
    policy: RetryPolicy,
    *,
    now: float,
    rng: random.Random | None = None,
    known_canceled: bool = False,
) -> Completion:
    """What a failed attempt means for `delivery` (the row as claimed, before this attempt
    counted): a final outcome, a retry after the policy's backoff, or `dead` once the
    delivery's own budget is spent. `known_canceled`: the ledger has the event as canceled."""
    if failure.kind is FailureKind.NOT_FOUND:
        if delivery.sent or known_canceled:
            # An earlier attempt may have canceled it before its answer was recorded (timeout,
            # crash), or it was canceled meanwhile: MeetBit reports a soft-deleted event as
            # missing.
            return Completion(
                status=Status.SUCCEEDED,
                outcome="already_canceled",
                meetbit_status=404,
                canceled=True,
            )
        # No earlier attempt may have canceled it, so the 404 is definite, and stays so when
        # the delivery is replayed.
        return Completion(
            status=Status.FAILED,
            outcome="not_found",
            meetbit_status=404,
            last_error=failure.detail,
            sent=False,
        )
    if failure.kind is FailureKind.REJECTED:
        return Completion(
            status=Status.FAILED,
            outcome="rejected",
            meetbit_status=failure.status,
            error={"errors": failure.errors or {}},
            last_error=failure.detail,
            sent=delivery.sent,
        )
    return _retry_or_dead(failure, delivery, policy, now=now, rng=rng)


def _retry_or_dead(
    failure: Failure,
    delivery: Delivery,
    policy: RetryPolicy,
    *,
    now: float,
    rng: random.Random | None,
) -> Completion:
    attempts = delivery.attempts + 1
    pause_until = None
    if failure.kind is FailureKind.RATE_LIMITED:
        # Everyone waits, not just this process: MeetBit locks out a client that retries at once.
        pause_until = now + (failure.retry_after or 1.0)
        retry_at = pause_until + policy.backoff(1, rng)
    else:
        retry_at = now + policy.backoff(attempts, rng)
    dead = attempts >= delivery.max_attempts or retry_at > delivery.expires_at.timestamp()
    # An answer that proves MeetBit did nothing (401, 429) leaves only earlier doubt.
    did_nothing = failure.kind in (FailureKind.RATE_LIMITED, FailureKind.REFUSED)
    return Completion(
        status=Status.DEAD if dead else Status.FAILED,
        outcome="failed" if dead else None,
        meetbit_status=failure.status,
        error={"reason": failure.reason},
        last_error=failure.detail,
        next_attempt_at=None if dead else retry_at,
        sent=delivery.sent or (failure.reached and not did_nothing),
        pause_until=pause_until,
    )


def already_canceled(event: dict[str, Any] | None) -> Completion:
    """The event was known canceled before any call: settled from the ledger."""
    return Completion(status=Status.SUCCEEDED, outcome="already_canceled", event=event)
