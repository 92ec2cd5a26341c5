"""Run one attempt of a delivery: start it in the ledger (claim, canceled check and rate slot in
one transaction), call MeetBit, record what the answer means.

Used by the synchronous hook path (with a deadline), by replays, and by the worker (the next
due delivery, without a deadline): one way in, `Dispatcher.attempt`. The row is claimed with a
lease and marked `sent` right before the call, so a crash between "MeetBit canceled" and
"ledger recorded" is recognised on the next attempt (see `bridge.core.delivery.classify`).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from bridge.core.delivery import (
    Completion,
    Delivery,
    Failure,
    FailureKind,
    NewDelivery,
    RetryPolicy,
    Start,
    canceled,
    classify,
)
from bridge.delivery import metrics
from bridge.ledger import AttemptRecord, Ledger, RequestRecord, Slot
from bridge.meetbit import (
    MeetBitAuthError,
    MeetBitClient,
    MeetBitError,
    MeetBitNotFound,
    MeetBitPermissionError,
    MeetBitRateLimited,
    MeetBitValidationError,
)

log = logging.getLogger(__name__)

RATE_KEY = "meetbit"
# The lease outlives the longest attempt (slot wait + connect + read timeout) by this much, so
# a live delivery is never claimed twice, while a killed process's lease soon expires.
LEASE_MARGIN = 5.0
# The longest one attempt waits for a rate slot before handing the delivery back: keeps a
# paused MeetBit (429 Retry-After) from pinning a process, and bounds the lease.
SLOT_WAIT = 5.0
# Spacing 8 % wider than 1/rate: MeetBit counts per second by arrival, and scheduling and
# network jitter can bunch calls that left here evenly spaced (hammering locks the client
# out). Measured: 4 % still let a 429 through in a 300-webhook burst.
RATE_SAFETY = 1.08


@dataclass(frozen=True)
class Attempt:
    """What one `attempt` did: the delivery as recorded, and what became of it."""

    delivery: Delivery
    queued: bool  # left pending/failed for a later attempt (no slot in time, transient failure)
    busy: bool = False  # another process holds it in flight
    created: bool = False  # the delivery was recorded by this attempt
    replayed: bool = False  # it was final already: nothing was done
    waiting_for: str | None = None  # another delivery of the same event is in flight


def failure_of(exc: MeetBitError) -> Failure:
    """The client's typed error as the domain's `Failure`."""
    kind = FailureKind.TRANSIENT
    if isinstance(exc, MeetBitNotFound):
        kind = FailureKind.NOT_FOUND
    elif isinstance(exc, MeetBitValidationError):
        kind = FailureKind.REJECTED
    elif isinstance(exc, MeetBitRateLimited):
        kind = FailureKind.RATE_LIMITED
    elif isinstance(exc, (MeetBitAuthError, MeetBitPermissionError)):
        kind = FailureKind.REFUSED
    return Failure(
        kind=kind,
        reason=exc.reason,
        detail=exc.detail,
        status=exc.status,
        reached=exc.sent,
        retry_after=exc.retry_after if isinstance(exc, MeetBitRateLimited) else None,
        errors=exc.errors if isinstance(exc, MeetBitValidationError) else None,
    )


class Dispatcher:
    def __init__(
        self,
        ledger: Ledger,
        client: MeetBitClient,
        *,
        rate: float,
        timeout: tuple[float, float],
        retry_backoff: tuple[float, float] = (5.0, 3600.0),
    ) -> None:
        self.ledger = ledger
        self.client = client
        self.interval = RATE_SAFETY / rate
        self.timeout = timeout
        self.policy = RetryPolicy(backoff_base=retry_backoff[0], backoff_cap=retry_backoff[1])
        self.lease = SLOT_WAIT + sum(timeout) + LEASE_MARGIN

    def attempt(
        self,
        which: NewDelivery | str | None,
        *,
        deadline: float | None,
        by: str = "web",
        request: RequestRecord | None = None,
    ) -> Attempt | None:
        """Attempt `which` (a cancel to record, a stored delivery's id, or None: the next due
        delivery), giving up on the call if it cannot end by `deadline`. None: nothing due.

        `by` names the kind of process in the attempt's row (`web`, `worker`, `cli`);
        `request` is the webhook a new cancel came from, stored with it."""
        max_wait = SLOT_WAIT
        if deadline is not None:
            # Waiting for a slot may use half of what is left; the other half is for the call.
            max_wait = min(SLOT_WAIT, (deadline - time.time()) / 2)
        slot = Slot(RATE_KEY, self.interval, max_wait)
        give_up = time.time() + max_wait
        started = self.ledger.attempts.start(which, lease=self.lease, slot=slot, request=request)
        d, kind, created = started.delivery, started.kind, started.created
        if d is None:
            return None
        if kind is Start.BUSY:
            in_flight = d.status == "in_flight"
            return Attempt(d, queued=False, busy=in_flight, replayed=not in_flight and d.final)
        if kind is Start.SETTLED:
            return Attempt(d, queued=False, created=created)
        if kind is Start.NO_SLOT:
            return Attempt(d, queued=True, created=created)
        if kind is Start.EVENT_BUSY:
            return Attempt(d, queued=True, created=created, waiting_for=started.waiting_for)
        if kind is Start.WAIT:
            assert started.at is not None
            time.sleep(max(0.0, started.at - time.time()))
            if not self._confirm(d.id, slot, give_up):
                # Handed back, nothing sent, to be tried when a slot is free.
                retry_at = self.ledger.rate.next_slot(RATE_KEY)
                self.ledger.attempts.release(d.id, next_attempt_at=retry_at)
                return Attempt(self.ledger.deliveries.get(d.id) or d, queued=True, created=created)
        done = self._call(d, deadline, by=by)
        queued = done.next_attempt_at is not None and not done.final
        return Attempt(done, queued=queued, created=created)

    def _confirm(self, delivery_id: str, slot: Slot, give_up: float) -> bool:
        """At a reserved start: confirm the slot (marking the delivery sent), retrying while
        the spacing or a pause holds; False, nothing sent, if that is past `give_up`."""
        while True:
            retry_at = self.ledger.attempts.confirm(delivery_id, slot)
            if retry_at is None:
                return True
            if retry_at > give_up:
                return False
            time.sleep(max(0.0, retry_at - time.time()))

    def _call(self, delivery: Delivery, deadline: float | None, *, by: str) -> Delivery:
        """Call MeetBit for a delivery whose slot is confirmed (and which is marked sent);
        `delivery` is the row as claimed, before this attempt counted."""
        assert delivery.calendar_id is not None and delivery.event_id is not None
        read_timeout = None
        if deadline is not None:
            read_timeout = max(0.1, min(self.timeout[1], deadline - time.time()))
        started_at = datetime.now(UTC)
        completion: Completion
        try:
            with metrics.meetbit_call_timer():
                result = self.client.cancel_event(
                    delivery.calendar_id,
                    delivery.event_id,
                    delivery.note or "",
                    read_timeout=read_timeout,
                )
        except MeetBitError as exc:
            log.info(
                "meetbit call failed",
                extra={"delivery_id": delivery.id, "reason": exc.reason, "status": exc.status},
            )
            failure = failure_of(exc)
            # A 404 for an event the ledger saw canceled meanwhile (MeetBit's own webhook)
            # means it is gone because it was canceled, not that it never existed.
            known = failure.kind is FailureKind.NOT_FOUND and (
                self.ledger.canceled.find(delivery.calendar_id, delivery.event_id) is not None
            )
            completion = classify(
                failure, delivery, self.policy, now=time.time(), known_canceled=known
            )
        else:
            completion = canceled(result.event)
        record = AttemptRecord(
            number=delivery.attempts + 1,
            process=f"{by} {socket.gethostname()}:{os.getpid()}",
            started_at=started_at,
            finished_at=datetime.now(UTC),
            sent=True,
        )
        return self.ledger.attempts.complete(
            delivery.id, completion, attempt=record, rate_key=RATE_KEY
        )
