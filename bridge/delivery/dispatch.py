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
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from bridge import logs, tracing
from bridge.core import rate
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
from bridge.core.rate import Grant
from bridge.delivery import metrics
from bridge.delivery.alerting import LONG_PAUSE, Alerter
from bridge.ledger import AttemptRecord, Ledger, RequestRecord, Slot
from bridge.meetbit import (
    MeetBitAuthError,
    MeetBitClient,
    MeetBitError,
    MeetBitLate,
    MeetBitNotFound,
    MeetBitPermissionError,
    MeetBitRateLimited,
    MeetBitValidationError,
    RateLimitInfo,
)

log = logging.getLogger(__name__)

RATE_KEY = "meetbit"
# The account of the MEETBIT_* variables, used by every route that names none.
DEFAULT_ACCOUNT = "default"
# The lease outlives the longest attempt (slot wait + connect + read timeout) by this much, so
# a live delivery is never claimed twice, while a killed process's lease soon expires.
LEASE_MARGIN = 5.0
# The longest one attempt waits for a rate slot before handing the delivery back: keeps a
# paused MeetBit (429 Retry-After) from pinning a process, and bounds the lease.
SLOT_WAIT = 5.0


@dataclass(frozen=True)
class Account:
    """One MeetBit account: its client, its rate ceiling (calls per second; None: `auto`) and
    the key of its limiter in the ledger."""

    name: str
    client: MeetBitClient
    ceiling: float | None

    @property
    def key(self) -> str:
        return RATE_KEY if self.name == DEFAULT_ACCOUNT else f"{RATE_KEY}:{self.name}"


def heard_of(info: RateLimitInfo | None, answered_at: float) -> tuple[float | None, float | None]:
    """What an answer's headers mean for the limiter: the limit in calls per second (None:
    nothing believable) and until when every call must hold (None: no hold)."""
    if info is None:
        return None, None
    limit = None
    if info.limit is not None:
        per_second = info.limit / (info.window or 1.0)
        limit = per_second if 0 < per_second <= rate.AUTO_CEILING else None
    heard = rate.Heard(
        limit=limit,
        window=info.window,
        remaining=info.remaining,
        reset=info.reset,
        retry_after=info.retry_after,
    )
    return limit, rate.hold_after(heard, answered_at)


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
        rate: float | None,
        timeout: tuple[float, float],
        retry_backoff: tuple[float, float] = (5.0, 3600.0),
        alerts: Alerter | None = None,
        accounts: Mapping[str, Account] | None = None,
        route_accounts: Mapping[str, str] | None = None,
    ) -> None:
        """`client` and `rate` (calls per second, a ceiling; None: `auto`) are the default
        account's; `accounts` are the route file's others by name, and `route_accounts` says
        which routes use which (the rest use the default)."""
        self.ledger = ledger
        self.alerts = alerts
        self.client = client
        default = Account(DEFAULT_ACCOUNT, client, rate)
        self.accounts = {DEFAULT_ACCOUNT: default, **(accounts or {})}
        self.route_accounts = dict(route_accounts or {})
        self.timeout = timeout
        self.policy = RetryPolicy(backoff_base=retry_backoff[0], backoff_cap=retry_backoff[1])
        self.lease = SLOT_WAIT + sum(timeout) + LEASE_MARGIN

    def account_for(self, delivery: Delivery) -> Account:
        name = self.route_accounts.get(delivery.route, DEFAULT_ACCOUNT)
        return self.accounts.get(name) or self.accounts[DEFAULT_ACCOUNT]

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
        give_up = time.time() + max_wait

        def slot_for(d: Delivery) -> Slot:
            account = self.account_for(d)
            return Slot(account.key, account.ceiling, max_wait)

        with tracing.span("bridge.ledger.write", step="start"):
            started = self.ledger.attempts.start(
                which, lease=self.lease, slot=slot_for, request=request
            )
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
        account = self.account_for(d)
        assert started.grant is not None
        given: Grant | None = started.grant
        if kind is Start.WAIT:
            with tracing.span("bridge.rate_wait"):
                given = self._await_slot(d.id, account, started.grant, give_up, mark_sent=True)
            if given is None:
                # Handed back, nothing sent, to be tried when a slot is free.
                return self._hand_back(d, account, created)
        done = self._call(d, account, given, give_up, deadline, by=by)
        if done is None:
            return self._hand_back(d, account, created)
        queued = done.next_attempt_at is not None and not done.final
        return Attempt(done, queued=queued, created=created)

    def _hand_back(self, d: Delivery, account: Account, created: bool) -> Attempt:
        retry_at = self.ledger.rate.next_slot(account.key, account.ceiling)
        self.ledger.attempts.release(d.id, next_attempt_at=retry_at)
        return Attempt(self.ledger.deliveries.get(d.id) or d, queued=True, created=created)

    def _await_slot(
        self, delivery_id: str, account: Account, given: Grant, give_up: float, *, mark_sent: bool
    ) -> Grant | None:
        """Sleep to a slot's start and confirm it (taking a new one while a hold or a lowered
        budget voids it); None, nothing sent, when no slot starts before `give_up`."""
        while True:
            time.sleep(max(0.0, given.at - time.time()))
            slot = Slot(account.key, account.ceiling, max(0.0, give_up - time.time()))
            confirmed = self.ledger.attempts.confirm(delivery_id, slot, given, mark_sent=mark_sent)
            if confirmed.go:
                return given
            if confirmed.grant is None:
                return None
            given = confirmed.grant

    def _call(
        self,
        delivery: Delivery,
        account: Account,
        given: Grant | None,
        give_up: float,
        deadline: float | None,
        *,
        by: str,
    ) -> Delivery | None:
        """Call MeetBit for a delivery whose slot is confirmed (and which is marked sent);
        `delivery` is the row as claimed, before this attempt counted. None: the call missed
        its slot and no new one starts before `give_up` (nothing was sent)."""
        if by == "web":
            return self._call_traced(delivery, account, given, give_up, deadline, by=by)
        # A worker's attempt is a trace of its own, linked to the webhook's.
        with tracing.linked_span(
            "bridge.worker.attempt",
            delivery.traceparent,
            delivery_id=delivery.id,
            route=delivery.route,
            attempt=delivery.attempts + 1,
        ):
            return self._call_traced(delivery, account, given, give_up, deadline, by=by)

    def _call_traced(
        self,
        delivery: Delivery,
        account: Account,
        given: Grant | None,
        give_up: float,
        deadline: float | None,
        *,
        by: str,
    ) -> Delivery | None:
        assert delivery.calendar_id is not None and delivery.event_id is not None
        started_at = datetime.now(UTC)
        started = time.perf_counter()
        completion: Completion
        error: MeetBitError | None = None
        # The webhook's id goes to MeetBit; a replay's lines also carry the admin request's.
        request_id = delivery.x_request_id or logs.current("request_id")
        info: RateLimitInfo | None = None
        while True:
            assert given is not None
            read_timeout = None
            if deadline is not None:
                read_timeout = max(0.1, min(self.timeout[1], deadline - time.time()))
            call_span = tracing.span(
                "meetbit.cancel",
                delivery_id=delivery.id,
                calendar_id=delivery.calendar_id,
                event_id=delivery.event_id,
            )
            timer = metrics.meetbit_call_timer(account.name) if by == "web" else _no_timer()
            try:
                with call_span, timer:
                    result = account.client.cancel_event(
                        delivery.calendar_id,
                        delivery.event_id,
                        delivery.note or "",
                        read_timeout=read_timeout,
                        request_id=request_id,
                        send_by=given.send_by,
                    )
            except MeetBitLate:
                # The process stalled past its slot: a new slot, rather than a call that would
                # go out bunched with the next window's.
                log.info("meetbit call missed its rate slot", extra={"delivery_id": delivery.id})
                slot = Slot(account.key, account.ceiling, max(0.0, give_up - time.time()))
                given = self.ledger.attempts.reslot(slot)
                if given is not None:
                    given = self._await_slot(delivery.id, account, given, give_up, mark_sent=False)
                if given is None:
                    return None
                continue
            except MeetBitError as exc:
                error = exc
                info = exc.rate_limit
                failure = failure_of(exc)
                if failure.kind is FailureKind.REFUSED:
                    self._alert("meetbit_auth")
                # A 404 for an event the ledger saw canceled meanwhile (MeetBit's own webhook)
                # means it is gone because it was canceled, not that it never existed.
                known = failure.kind is FailureKind.NOT_FOUND and (
                    self.ledger.canceled.find(delivery.calendar_id, delivery.event_id) is not None
                )
                completion = classify(
                    failure, delivery, self.policy, now=time.time(), known_canceled=known
                )
            else:
                info = result.rate_limit
                completion = canceled(result.event)
            break
        heard, hold_until = heard_of(info, time.time())
        record = AttemptRecord(
            number=delivery.attempts + 1,
            process=f"{by} {socket.gethostname()}:{os.getpid()}",
            started_at=started_at,
            finished_at=datetime.now(UTC),
            sent=True,
        )
        with tracing.span("bridge.ledger.write", step="complete"):
            done = self.ledger.attempts.complete(
                delivery.id,
                completion,
                attempt=record,
                rate_key=account.key,
                heard=heard,
                hold_until=hold_until,
            )
        result_label = "ok" if error is None else metrics.label(error.reason)
        if by != "web":
            # Its process has no /metrics: counted where the web processes' scrape reads it.
            self.ledger.coordination.count_worker_call(result_label)
        _log_call(done, error, by=by, number=record.number, started=started, request_id=request_id)
        if done.status == "dead":
            self._alert("dead")
        if completion.pause_until is not None and completion.pause_until - time.time() > LONG_PAUSE:
            self._alert("paused")
        return done

    def _alert(self, kind: str) -> None:
        if self.alerts is not None:
            self.alerts.notify(kind)


@contextmanager
def _no_timer() -> Iterator[None]:
    yield


def _log_call(
    done: Delivery,
    error: MeetBitError | None,
    *,
    by: str,
    number: int,
    started: float,
    request_id: str | None,
) -> None:
    """One line per MeetBit call: which delivery, what MeetBit said, what became of it."""
    fields: dict[str, object] = {
        "delivery_id": done.id,
        "route": done.route,
        "calendar_id": done.calendar_id,
        "event_id": done.event_id,
        "attempt": number,
        "process_kind": by,
        "meetbit_status": error.status if error is not None else done.meetbit_status,
        "outcome": done.outcome or done.status,
        "delivery_status": done.status,
        "error_kind": error.reason if error is not None else None,
        "latency_ms": round((time.perf_counter() - started) * 1000, 1),
    }
    # The worker's context has no request id: the delivery's is its line's.
    with logs.bound(request_id=None if logs.current("request_id") else request_id):
        _emit(done, error, number, fields)


def _emit(
    done: Delivery, error: MeetBitError | None, number: int, fields: dict[str, object]
) -> None:
    # The error's detail stays in the ledger (admin API): it may quote MeetBit's answer, which
    # may quote the note, which comes from the webhook's body.
    if error is None:
        log.info("meetbit canceled event %s", done.event_id, extra=fields)
    elif isinstance(error, (MeetBitAuthError, MeetBitPermissionError)):
        # Every delivery fails the same way until someone fixes the key or its role.
        log.error("meetbit refused the access key (%s)", error.reason, extra=fields)
    elif done.status == "dead":
        log.error("delivery dead after %d attempts (%s)", number, error.reason, extra=fields)
    elif done.final:
        log.warning("meetbit call failed for good (%s)", error.reason, extra=fields)
    else:
        fields["next_attempt_at"] = (
            done.next_attempt_at.isoformat() if done.next_attempt_at is not None else None
        )
        log.warning("meetbit call failed, will retry (%s)", error.reason, extra=fields)
