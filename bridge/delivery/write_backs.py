"""Write-backs, the application side: what intake keeps with a delivery for its route's
`write_back` entries (`plan`), and the worker's runner that delivers the jobs the ledger made
once the delivery was final (`WriteBackRunner`): the host's shared rate, the marker look-up
after an uncertain attempt, backoff with jitter, `dead` after the route's budget.

A write-back never changes what the sender was answered: jobs exist only once the delivery
is final, and only the worker process runs them, in a thread of its own.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from bridge.core.delivery import RetryPolicy
from bridge.core.limits import MAX_RECORD
from bridge.delivery.alerting import Alerter
from bridge.delivery.routes import Route, WriteBackEntry
from bridge.ledger import Delivery, Ledger, WriteBack
from bridge.writeback import TEXT_MAX, ErrorKind, Job, SinkError

log = logging.getLogger(__name__)

# Spacing wider than the vendor's budget by this much (as for MeetBit: arrival jitter bunches
# calls that left here evenly spaced).
RATE_SAFETY = 1.08
# The longest one request waits for its host's slot before the job is handed back.
SLOT_WAIT = 5.0
# A claim lasts one slot wait and one call, plus this; each further request of the job (the
# marker look-up, then the write; a token fetch) renews it, so a killed worker's job is
# claimed again soon while a live one is never claimed twice.
LEASE_MARGIN = 3.0
# A 429 without Retry-After pauses the host this long.
DEFAULT_PAUSE = 10.0


def marker(delivery_id: str) -> str:
    return f"[{delivery_id}]"


def plan(route: Route, ctx: Mapping[str, Any]) -> dict[str, Any] | None:
    """The write-back plan kept with a new delivery of `route`: each entry's record, rendered
    now from the webhook, and the part of the webhook the texts read later."""
    if not route.write_back:
        return None
    entries = []
    for entry in route.write_back:
        record, error = _record(entry, ctx)
        entries.append(
            {
                "entry": entry.index,
                "to": entry.to,
                "on": sorted(entry.on),
                "record": record,
                "error": error,
                "max_attempts": route.max_attempts,
                "max_age": route.max_age,
            }
        )
    names = set().union(*(e.context for e in route.write_back))
    context: dict[str, Any] = {}
    if "event" in names or "payload" in names:
        context["event"] = ctx["event"]
        if "payload" in names:
            # One webhook, one item: the same object, kept once.
            context["payload"] = None if ctx["payload"] is ctx["event"] else ctx["payload"]
            context["payload_is_event"] = ctx["payload"] is ctx["event"]
    return {"entries": entries, "context": context}


def _record(entry: WriteBackEntry, ctx: Mapping[str, Any]) -> tuple[str, str | None]:
    if entry.record is None:  # the signed webhook has no record
        return "", None
    try:
        record = entry.record(ctx)
    except Exception as exc:  # a user template: its failure is the route's problem, shown
        return "", f"record could not be rendered: {type(exc).__name__}: {str(exc)[:120]}"
    if not record:
        return "", "record rendered empty"
    if len(record) > MAX_RECORD:
        return record[:MAX_RECORD], f"record is longer than {MAX_RECORD} characters"
    return record, None


def result_of(delivery: Delivery, job: WriteBack) -> dict[str, Any]:
    """`result` in a write-back's templates, and the signed webhook's data."""
    return {
        "outcome": job.outcome,
        "delivery_id": delivery.id,
        "calendar_id": delivery.calendar_id,
        "event_id": delivery.event_id,
        "note": delivery.note,
        "event": delivery.event or {},
    }


def text_with_marker(text: str, mark: str) -> str:
    """The text, cut to fit, ending in the marker that lets a retry find it."""
    room = TEXT_MAX - len(mark) - 1
    text = text.strip()
    if len(text) > room:
        text = text[: room - 1].rstrip() + "…"
    return f"{text} {mark}" if text else mark


class NoSlot(Exception):
    """The host's next slot is too far off: hand the job back until then."""

    def __init__(self, at: float) -> None:
        super().__init__(at)
        self.at = at


class WriteBackRunner:
    """Delivers due write-back jobs one at a time (one thread per worker process)."""

    def __init__(
        self,
        ledger: Ledger,
        routes: Mapping[str, Route],
        *,
        retry_backoff: tuple[float, float] = (5.0, 3600.0),
        timeout: tuple[float, float] = (3.05, 10.0),
        alerts: Alerter | None = None,
    ) -> None:
        self.ledger = ledger
        self.alerts = alerts
        self.routes = routes
        self.policy = RetryPolicy(backoff_base=retry_backoff[0], backoff_cap=retry_backoff[1])
        self.call_lease = sum(timeout) + LEASE_MARGIN
        self.lease = SLOT_WAIT + self.call_lease
        self.current: str | None = None  # the job in hand, whose claim each request renews
        self.stop = threading.Event()
        self.done = 0
        for route in routes.values():
            for entry in route.write_back:
                sink = entry.sink
                sink.config = replace(sink.config, timeout=timeout)
                sink.pace = self._pacer(sink.host, entry.rate)

    def _pacer(self, host: str, rate: tuple[int, float]) -> Callable[[], None]:
        interval = RATE_SAFETY * rate[1] / rate[0]
        rates = self.ledger.write_back_rates

        def pace() -> None:
            while True:
                start, next_free = rates.reserve(host, interval=interval, max_wait=SLOT_WAIT)
                if start is None:
                    raise NoSlot(next_free)
                time.sleep(max(0.0, start - time.time()))
                # A 429 answered meanwhile to another process holds this slot too.
                if rates.paused_until(host) <= time.time():
                    if self.current is not None:
                        self.ledger.write_backs.extend(self.current, lease=self.call_lease)
                    return

        return pace

    def entry(self, job: WriteBack) -> WriteBackEntry | None:
        route = self.routes.get(job.route)
        if route is None:
            return None
        for entry in route.write_back:
            if entry.index == job.entry and entry.to == job.to:
                return entry
        return None

    def run_once(self) -> bool:
        """Deliver the next due job; False when none is due."""
        job = self.ledger.write_backs.claim(lease=self.lease)
        if job is None:
            return False
        self.current = job.id
        try:
            self._deliver(job)
        finally:
            self.current = None
        self.done += 1
        return True

    def _deliver(self, job: WriteBack) -> None:
        jobs = self.ledger.write_backs
        entry = self.entry(job)
        delivery = self.ledger.deliveries.get(job.delivery_id)
        if entry is None or delivery is None:
            # The route (or its entry) was removed from the file: nothing can write it.
            jobs.complete(job.id, status="dead", last_error="the route has no such write_back")
            return
        mark = marker(delivery.id)
        try:
            job_data = self._job(job, entry, delivery, mark)
        except Exception as exc:  # a user template failing on this outcome
            jobs.complete(
                job.id, status="dead", last_error=f"text could not be rendered: {str(exc)[:120]}"
            )
            return
        sink = entry.sink
        try:
            found = sink.find(job_data) if job.sent else None
            if found is not None:
                log.info("write-back found already written", extra={"write_back_id": job.id})
                jobs.complete(job.id, status="succeeded", created_id=found)
                return
            jobs.mark_sent(job.id)
            created = sink.write(job_data)
        except NoSlot as exc:
            jobs.release(job.id, next_attempt_at=exc.at)
            return
        except SinkError as exc:
            self._failed(job, sink.host, exc)
            return
        jobs.complete(job.id, status="succeeded", created_id=created)

    def _job(self, job: WriteBack, entry: WriteBackEntry, delivery: Delivery, mark: str) -> Job:
        stored = self.ledger.write_backs.context(job)
        event = stored.get("event")
        payload = event if stored.get("payload_is_event") else stored.get("payload")
        result = result_of(delivery, job)
        ctx = {"payload": payload, "event": event, "route": job.route, "result": result}
        text = text_with_marker(entry.text(ctx), mark)
        outcome = {
            **result,
            "write_back_id": job.id,
            "route": job.route,
            "text": text,
        }
        return Job(id=job.id, record=job.record, text=text, marker=mark, outcome=outcome)

    def _failed(self, job: WriteBack, host: str, exc: SinkError) -> None:
        jobs = self.ledger.write_backs
        now = time.time()
        attempts = job.attempts + 1
        sent = job.sent if not exc.uncertain else True
        if exc.kind == ErrorKind.REJECTED:
            log.warning(
                "write-back rejected", extra={"write_back_id": job.id, "status": exc.status}
            )
            jobs.complete(job.id, status="dead", last_error=exc.detail, sent=sent)
            return
        if exc.kind == ErrorKind.RATE_LIMITED:
            # Every process's calls to the host wait, not just this job's.
            pause = exc.retry_after if exc.retry_after is not None else DEFAULT_PAUSE
            self.ledger.write_back_rates.pause(host, until=now + pause)
            retry_at = now + pause + random.uniform(0, 1.0)
        else:
            retry_at = now + self.policy.backoff(attempts)
        # A 401/403 or a 429 proves nothing was written: the flag keeps only earlier doubt.
        if exc.kind in (ErrorKind.AUTH, ErrorKind.RATE_LIMITED):
            sent = job.sent
        if exc.kind == ErrorKind.AUTH and self.alerts is not None:
            # A person must fix the credential; retrying alone will not.
            self.alerts.notify("writeback_auth")
        dead = attempts >= job.max_attempts or retry_at > job.expires_at.timestamp()
        log.warning(
            "write-back failed",
            extra={"write_back_id": job.id, "kind": exc.kind, "status": exc.status, "dead": dead},
        )
        jobs.complete(
            job.id,
            status="dead" if dead else "failed",
            last_error=exc.detail,
            next_attempt_at=None if dead else retry_at,
            sent=sent,
        )

    def run(self, *, until_idle: bool = False, idle: float = 0.5) -> None:
        while not self.stop.is_set():
            try:
                worked = self.run_once()
            except Exception:  # the ledger down, a bug in one job: the thread must go on
                log.exception("write-back runner error")
                self.stop.wait(1.0)
                continue
            if worked:
                continue
            if until_idle and self.idle_now():
                return
            self.stop.wait(idle)

    def idle_now(self) -> bool:
        counts = self.ledger.queries.counts_by_status()
        if counts.get("pending", 0) or counts.get("in_flight", 0):
            return False  # deliveries still to end may yet make jobs
        return self.ledger.write_backs.busy(within=SLOT_WAIT * 2) == 0

    def close(self) -> None:
        for route in self.routes.values():
            for entry in route.write_back:
                entry.sink.close()
