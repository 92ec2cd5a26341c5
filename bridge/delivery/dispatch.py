"""Run one delivery: claim it, wait for a shared rate-limit slot, call MeetBit, record the result.

Used by the synchronous hook path (with a deadline) and by the worker (without one). The ledger
row is claimed with a lease before the call and marked `sent` right before it, so a crash
between "MeetBit canceled" and "ledger recorded" is recognised on the next attempt: a 404 for a
delivery that may already have reached MeetBit is recorded as `already_canceled`, not a failure.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from bridge import metrics
from bridge.ledger import AttemptStart, Delivery, Ledger, NewDelivery
from bridge.meetbit import (
    CanceledEvent,
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
# network jitter can bunch calls that left here evenly spaced (API.md section 2: hammering
# locks the client out). Measured: 4 % still let a 429 through in a 300-webhook burst.
RATE_SAFETY = 1.08


# MeetBit refused these before acting on the request: the event cannot have been canceled.
_DEFINITELY_NOT_CANCELED = (MeetBitRateLimited, MeetBitAuthError, MeetBitPermissionError)


@dataclass(frozen=True)
class Attempt:
    """What one `run` did: the delivery as recorded, and whether it is waiting for a later try."""

    delivery: Delivery
    queued: bool  # left pending/failed for a later attempt (no slot in time, transient failure)
    busy: bool = False  # another process holds it in flight


def backoff(attempts: int, base: float, cap: float) -> float:
    """Full jitter (AWS architecture blog): uniform over [0, min(cap, base * 2^(n-1))]."""
    return random.uniform(0, min(cap, base * 2 ** max(0, attempts - 1)))


class Dispatcher:
    def __init__(
        self,
        ledger: Ledger,
        client: MeetBitClient,
        *,
        rate: float,
        timeout: tuple[float, float],
        retry_backoff: tuple[float, float] = (5.0, 3600.0),
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.ledger = ledger
        self.client = client
        self.interval = RATE_SAFETY / rate
        self.timeout = timeout
        self.retry_backoff = retry_backoff
        self.lease = SLOT_WAIT + sum(timeout) + LEASE_MARGIN
        self.clock = clock
        self.sleep = sleep

    def run(self, delivery: Delivery, *, deadline: float) -> Attempt:
        """The synchronous path: claim, then give up on the call if it cannot end by `deadline`.

        The claim, the canceled-event check and the slot (confirmed too when it starts now)
        share one ledger transaction, so an uncontended cancel costs one write before the call.
        """
        max_wait, give_up = self._slot_wait(deadline)
        started = self.ledger.start_attempt(
            delivery, lease=self.lease, key=RATE_KEY, interval=self.interval, max_wait=max_wait
        )
        if started.delivery is None:
            current = self.ledger.get(delivery.id) or delivery
            return Attempt(current, queued=False, busy=current.status == "in_flight")
        return self._started(started, give_up=give_up, deadline=deadline)

    def record_and_run(
        self, item: NewDelivery, *, deadline: float
    ) -> tuple[Delivery, bool, Attempt | None]:
        """Record one pending cancel and, if it is new, run it like `run`, its claim and slot
        taken in the recording transaction. Returns the delivery as recorded, whether it was
        created, and the attempt (None for a delivery already stored: nothing was run)."""
        max_wait, give_up = self._slot_wait(deadline)
        recorded, created, started = self.ledger.record_and_start(
            item, lease=self.lease, key=RATE_KEY, interval=self.interval, max_wait=max_wait
        )
        if started is None:
            return recorded, created, None
        return recorded, created, self._started(started, give_up=give_up, deadline=deadline)

    def _slot_wait(self, deadline: float) -> tuple[float, float]:
        """How long a synchronous attempt may wait for a slot, and until when."""
        # Waiting for a slot may use half of what is left; the other half is for the call.
        max_wait = min(SLOT_WAIT, (deadline - self.clock()) / 2)
        return max_wait, self.clock() + max_wait

    def _started(self, started: AttemptStart, *, give_up: float, deadline: float) -> Attempt:
        """Carry on from a claim made by `start_attempt` or `record_and_start`."""
        claimed = started.delivery
        assert claimed is not None
        if started.settled:
            return Attempt(claimed, queued=False)
        if started.start is None:
            return self._no_slot(claimed)
        if not started.confirmed:
            self.sleep(max(0.0, started.start - self.clock()))
            if not self._confirm(give_up, sending=claimed.id):
                return self._no_slot(claimed)
        return self._call(claimed, deadline)

    def run_claimed(
        self, delivery: Delivery, *, max_wait: float = SLOT_WAIT, deadline: float | None = None
    ) -> Attempt:
        """Deliver a delivery this process has claimed; waits at most `max_wait` for a slot."""
        assert delivery.calendar_id is not None and delivery.event_id is not None
        known = self.ledger.canceled_event(delivery.calendar_id, delivery.event_id)
        if known is not None:
            done = self.ledger.complete(
                delivery.id, status="succeeded", outcome="already_canceled", event=known.event
            )
            return Attempt(done, queued=False)

        if not self._wait_for_slot(max_wait, sending=delivery.id):
            return self._no_slot(delivery)
        return self._call(delivery, deadline)

    def _no_slot(self, delivery: Delivery) -> Attempt:
        """Hand the claimed delivery back, nothing sent, to be tried when a slot is free."""
        retry_at = self.ledger.next_slot(RATE_KEY)
        self.ledger.release(delivery.id, next_attempt_at=_dt(retry_at))
        return Attempt(self._reload(delivery), queued=True)

    def _call(self, delivery: Delivery, deadline: float | None) -> Attempt:
        """Call MeetBit for a delivery whose slot is confirmed (and which is marked sent);
        `delivery` is the row as claimed, before this attempt counted."""
        assert delivery.calendar_id is not None and delivery.event_id is not None
        read_timeout = None
        if deadline is not None:
            read_timeout = max(0.1, min(self.timeout[1], deadline - self.clock()))
        try:
            with metrics.meetbit_call_timer():
                result = self.client.cancel_event(
                    delivery.calendar_id,
                    delivery.event_id,
                    delivery.note or "",
                    read_timeout=read_timeout,
                )
        except MeetBitError as exc:
            return self._failed(delivery, exc)
        return Attempt(self._canceled(delivery, result), queued=False)

    def _wait_for_slot(self, max_wait: float, *, sending: str) -> bool:
        """Reserve a slot (first come, first served), sleep until it, then confirm it, which
        marks the delivery sent in the same transaction; False, nothing sent, when the call
        could not start within max_wait."""
        give_up = self.clock() + max_wait
        start = self.ledger.reserve_slot(RATE_KEY, interval=self.interval, max_wait=max_wait)
        if start is None:
            return False
        self.sleep(max(0.0, start - self.clock()))
        return self._confirm(give_up, sending=sending)

    def _confirm(self, give_up: float, *, sending: str) -> bool:
        """At a reserved start: confirm the slot (marking `sending` sent), retrying while the
        spacing or a pause holds; False, nothing sent, if that is past `give_up`."""
        while True:
            retry_at = self.ledger.confirm_slot(RATE_KEY, interval=self.interval, sending=sending)
            if retry_at is None:
                return True
            if retry_at > give_up:
                return False
            self.sleep(max(0.0, retry_at - self.clock()))

    def _reload(self, delivery: Delivery) -> Delivery:
        return self.ledger.get(delivery.id) or delivery

    def _canceled(self, delivery: Delivery, result: CanceledEvent) -> Delivery:
        return self.ledger.complete(
            delivery.id,
            status="succeeded",
            outcome="canceled",
            meetbit_status=200,
            event=result.event,
            canceled_source="bridge",
        )

    def _failed(self, delivery: Delivery, exc: MeetBitError) -> Attempt:
        log.info(
            "meetbit call failed",
            extra={"delivery_id": delivery.id, "reason": exc.reason, "status": exc.status},
        )
        if isinstance(exc, MeetBitNotFound):
            if delivery.sent:
                # An earlier attempt may have canceled it before we could record the answer
                # (timeout, crash): MeetBit then reports the soft-deleted event as missing.
                done = self.ledger.complete(
                    delivery.id,
                    status="succeeded",
                    outcome="already_canceled",
                    meetbit_status=404,
                    canceled_source="bridge",
                )
            else:
                # No earlier attempt may have canceled it, so MeetBit's 404 is definite; a
                # replay of this delivery must see it the same way again.
                done = self.ledger.complete(
                    delivery.id,
                    status="failed",
                    outcome="not_found",
                    meetbit_status=404,
                    last_error=exc.detail,
                    sent=False,
                )
            return Attempt(done, queued=False)
        if isinstance(exc, MeetBitValidationError):
            done = self.ledger.complete(
                delivery.id,
                status="failed",
                outcome="rejected",
                meetbit_status=400,
                error={"errors": exc.errors},
                last_error=exc.detail,
                sent=delivery.sent,
            )
            return Attempt(done, queued=False)

        now = self.clock()
        if isinstance(exc, MeetBitRateLimited):
            # Everyone waits, not just this process (API.md section 2: never retry at once).
            self.ledger.pause_calls(RATE_KEY, until=now + exc.retry_after)
            retry_at = now + exc.retry_after + backoff(1, *self.retry_backoff)
        else:
            retry_at = now + backoff(delivery.attempts + 1, *self.retry_backoff)
        attempts = delivery.attempts + 1
        expired = datetime.fromtimestamp(retry_at, UTC) > delivery.expires_at
        dead = attempts >= delivery.max_attempts or expired
        done = self.ledger.complete(
            delivery.id,
            # An answer that proves MeetBit did nothing (401, 429) leaves only earlier doubt.
            sent=delivery.sent or (exc.sent and not isinstance(exc, _DEFINITELY_NOT_CANCELED)),
            status="dead" if dead else "failed",
            outcome="failed" if dead else None,
            meetbit_status=exc.status,
            error={"reason": exc.reason},
            last_error=exc.detail,
            next_attempt_at=None if dead else _dt(retry_at),
        )
        return Attempt(done, queued=not dead)


def _dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)
