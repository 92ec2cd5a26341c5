"""The long-lived parts of one bridge process and the webhook journey through them.

`Bridge` hangs off `app.extensions["bridge"]`; the hook view calls `receive`, which runs each
step and raises typed errors, so the view itself stays a handful of lines.
"""

from __future__ import annotations

import math
import os
import socket
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from bridge import tracing
from bridge.delivery import answers, intake
from bridge.delivery.alerting import Alerter
from bridge.delivery.answers import Answer
from bridge.delivery.capture import capture
from bridge.delivery.dispatch import Account, Dispatcher
from bridge.delivery.routes import Route, load_route_file
from bridge.errors import BridgeError, InFlight, MappingError, NotFound
from bridge.ledger import AttemptRecord, Delivery, Ledger, NewDelivery, RequestRecord
from bridge.meetbit import MeetBitClient
from bridge.settings import Settings
from bridge.sources import InboundRequest, Parsed

# How long a duplicate waits for the same delivery in flight elsewhere before it is answered
# 409 with Retry-After, and how often it looks.
IN_FLIGHT_POLL = 0.05
# How soon a client may ask again about a delivery another process is delivering.
IN_FLIGHT_RETRY = 2
# A worker that has not written a heartbeat for this long is presumed gone.
WORKER_STALE = 15.0


def _retry_after(delivery: Delivery) -> int:
    """Seconds until a queued delivery's next attempt (1..3600), or a short wait if in flight."""
    if delivery.status == "pending" and delivery.next_attempt_at is not None:
        wait = (delivery.next_attempt_at - datetime.now(UTC)).total_seconds()
        return max(1, min(3600, math.ceil(wait)))
    return IN_FLIGHT_RETRY


@dataclass
class Receipt:
    """What the web layer keeps of one webhook between receiving and answering it: the id
    of its stored request, set once the request was stored (None: nothing new was recorded,
    as for a duplicate, a dry run or a refused request)."""

    request_id: str | None = None


@dataclass
class Bridge:
    settings: Settings
    routes: dict[str, Route]
    ledger: Ledger
    client: MeetBitClient
    dispatcher: Dispatcher

    @classmethod
    def from_settings(cls, settings: Settings) -> Bridge:
        routes, accounts = load_route_file(settings.config_path, settings.environ)
        ledger = Ledger(settings.database_url)
        tracing.instrument_engine(ledger.db.engine)
        client = MeetBitClient(
            settings.meetbit_base_url,
            settings.meetbit_access_key_id,
            settings.meetbit_access_key_secret,
            timeout=settings.meetbit_timeout,
        )
        alerts = Alerter(ledger, settings.alert_url, origin=settings.public_url)
        others = {
            name: Account(
                name,
                MeetBitClient(a.base_url, a.key_id, a.key_secret, timeout=settings.meetbit_timeout),
                a.rate_limit,
            )
            for name, a in accounts.items()
        }
        dispatcher = Dispatcher(
            ledger,
            client,
            rate=settings.meetbit_rate_limit,
            timeout=settings.meetbit_timeout,
            retry_backoff=settings.retry_backoff,
            alerts=alerts,
            accounts=others,
            route_accounts={
                r.name: r.meetbit_account for r in routes.values() if r.meetbit_account
            },
        )
        return cls(settings, routes, ledger, client, dispatcher)

    def route(self, name: str) -> Route:
        route = self.routes.get(name)
        if route is None:
            raise NotFound(f"no route named {name!r} is configured")
        return route

    def receive(
        self,
        route: Route,
        inbound: InboundRequest,
        *,
        dry_run: bool,
        receipt: Receipt | None = None,
        x_request_id: str | None = None,
    ) -> Answer:
        """Verify, parse, map, record, deliver: the whole journey of one webhook. With a
        `receipt`, the request is stored (credentials redacted) with its new deliveries and
        the receipt names it, so that the caller can `keep_answer` once it has answered.
        `x_request_id` (its X-Request-Id) is stored on each delivery and sent to MeetBit with
        every attempt."""
        with tracing.span("bridge.verify", route=route.name):
            route.source.verify(inbound)
        parsed = route.source.parse(inbound)
        request = None if dry_run or receipt is None else capture(route.name, route.source, inbound)
        request_id = None if request is None else request.id
        rows = intake.plan(
            route,
            parsed,
            inbound,
            self.ledger.links.get,
            request_id=request_id,
            x_request_id=x_request_id,
            traceparent=tracing.current_traceparent(),
        )
        if dry_run:
            return answers.dry_run(rows)
        deadline = time.time() + self.settings.sync_deadline
        if route.respond != "ack" and len(rows) == 1 and rows[0].status == "pending":
            # The common webhook, one cancel: recorded, claimed and given its rate slot in one
            # ledger transaction when it is new (with its request).
            delivery, old, created = self._run(rows[0], deadline, request=request)
            done = [(delivery, old)]
            stored = created
        else:
            done = []
            recorded = self.ledger.deliveries.record(rows, request=request)
            stored = any(created for _, created in recorded)
            for d, created in recorded:
                if d.final or route.respond == "ack":
                    done.append((d, not created and d.final))
                else:
                    done.append(self._run(d.id, deadline)[:2])
        if receipt is not None and stored:
            receipt.request_id = request_id
        # Replayed = answered entirely from what the ledger already held as final.
        replayed = all(old for _, old in done)
        deliveries = [d for d, _ in done]
        # Only a transient failure's answer depends on a worker (202 vs 502): ask only then.
        transient = any(d.status == "failed" and not d.final for d in deliveries)
        alive = transient and self.worker_alive()
        return answers.answer(deliveries, replayed=replayed, worker_alive=alive)

    def _run(
        self, which: NewDelivery | str, deadline: float, *, request: RequestRecord | None = None
    ) -> tuple[Delivery, bool, bool]:
        """One synchronous attempt; a delivery in flight elsewhere is waited for. Returns the
        delivery as it ends, whether it was final already (answered from the ledger) and
        whether this call recorded it."""
        attempt = self.dispatcher.attempt(which, deadline=deadline, request=request)
        assert attempt is not None  # only the worker's "next due" can find nothing
        created = attempt.created
        if attempt.waiting_for is not None:
            # Another delivery of the same event is being canceled: once it ends, this one is
            # settled from its result (or makes its own call if that one failed).
            if self._wait_while_in_flight(attempt.waiting_for, deadline).status == "in_flight":
                return attempt.delivery, False, created  # queued: the worker follows up
            attempt = self.dispatcher.attempt(attempt.delivery.id, deadline=deadline)
            assert attempt is not None
        if attempt.busy:
            return self._await_other(attempt.delivery, deadline), False, created
        return attempt.delivery, attempt.replayed, created

    def _wait_while_in_flight(self, delivery_id: str, deadline: float) -> Delivery:
        """The delivery once no process holds it in flight, or as it is at `deadline`."""
        while True:
            current = self.ledger.deliveries.get(delivery_id)
            if current is None:
                raise KeyError(delivery_id)
            if current.status != "in_flight" or time.time() >= deadline:
                return current
            time.sleep(IN_FLIGHT_POLL)

    def _await_other(self, delivery: Delivery, deadline: float) -> Delivery:
        """A concurrent duplicate: wait for the process that holds it, then answer its result."""
        current = self._wait_while_in_flight(delivery.id, deadline)
        if current.status != "in_flight":
            return current
        raise InFlight(
            "the same delivery is being processed; retry shortly",
            delivery_id=delivery.id,
            headers={"Retry-After": str(IN_FLIGHT_RETRY)},
        )

    def replay(self, delivery: Delivery, *, by: str = "web") -> Delivery:
        """Run a failed or dead delivery again now, at the shared rate; anything final is
        returned as stored. An event already canceled (by us or in MeetBit) needs no call.
        `by` names the process in the attempt's row (`web`, `worker`, `cli`)."""
        if delivery.status in ("pending", "in_flight"):
            raise InFlight(
                "the delivery is queued or in flight; it is not replayed",
                delivery_id=delivery.id,
                headers={"Retry-After": str(_retry_after(delivery))},
            )
        if delivery.status not in ("failed", "dead"):
            return delivery
        if delivery.outcome == "mapping_error":
            return self._remap(delivery, by=by)
        queued = self.ledger.deliveries.replay(delivery.id) or delivery
        if queued.status != "pending":  # nothing to call (a mapping error has no target)
            return queued
        deadline = time.time() + self.settings.sync_deadline
        # A worker that claimed it first answers as in flight (202 queued), like a duplicate.
        attempt = self.dispatcher.attempt(queued.id, deadline=deadline, by=by)
        assert attempt is not None
        return attempt.delivery

    def _remap(self, delivery: Delivery, *, by: str) -> Delivery:
        """Re-run a mapping error from its stored request: parsed and mapped again with the
        current route file and links (its verification is not repeated: it passed when the
        request arrived, and its credentials are not stored). The result is a remap attempt
        on the same delivery; a cancel it now maps to is then attempted at once, and further
        events of the same item (an email's several links) become new deliveries of the same
        request, attempted too. Without a stored request nothing can be done."""
        if delivery.request_id is None:
            return delivery
        stored = self.ledger.requests.get(delivery.request_id)
        if stored is None:
            return delivery
        started_at = datetime.now(UTC)
        rows = self._mapped_again(delivery, stored)
        record = AttemptRecord(
            number=0,  # not a MeetBit call: remaps are not counted as attempts
            process=f"{by} {socket.gethostname()}:{os.getpid()}",
            started_at=started_at,
            finished_at=datetime.now(UTC),
            sent=False,
            kind="remap",
        )
        first, *more = rows
        remapped = self.ledger.attempts.remap(delivery.id, first, attempt=record)
        if remapped is None:  # remapped meanwhile by another replay: show what it became
            return self.ledger.deliveries.get(delivery.id) or delivery
        if remapped.status != "pending":
            return remapped
        deadline = time.time() + self.settings.sync_deadline
        for extra, created in self.ledger.deliveries.record(more):
            if created or not extra.final:
                self.dispatcher.attempt(extra.id, deadline=deadline, by=by)
        attempt = self.dispatcher.attempt(remapped.id, deadline=deadline, by=by)
        assert attempt is not None
        return attempt.delivery

    def _mapped_again(self, delivery: Delivery, stored: RequestRecord) -> list[NewDelivery]:
        """The rows the stored request's item maps to today (at least one: a mapping error
        when the route is gone, the body no longer parses or the item is not in it)."""
        failed = NewDelivery(
            route=delivery.route,
            idempotency_key=delivery.idempotency_key,
            status="failed",
            outcome="mapping_error",
            request_id=stored.id,
        )
        route = self.routes.get(delivery.route)
        if route is None:
            problem = MappingError(f"the route {delivery.route!r} is no longer configured")
            return [replace(failed, error=problem.to_problem())]
        inbound = InboundRequest(
            method=stored.method,
            url=stored.path + (f"?{stored.query}" if stored.query else ""),
            headers=stored.header_map,
            query=dict(parse_qsl(stored.query, keep_blank_values=True)),
            body=stored.body,
            content_type=stored.content_type,
            received_at=stored.received_at.timestamp(),
        )
        try:
            parsed = route.source.parse(inbound)
        except BridgeError as exc:
            problem = MappingError(f"the stored request no longer parses: {exc.detail}")
            return [replace(failed, error=problem.to_problem())]
        items = [i for i in parsed.items if i.idempotency_key == delivery.idempotency_key]
        if not items:
            problem = MappingError("the stored request no longer holds this delivery's item")
            return [replace(failed, error=problem.to_problem())]
        one = Parsed(parsed.payload, items[:1])
        rows = intake.plan(route, one, inbound, self.ledger.links.get, request_id=stored.id)
        return rows or [failed]

    def keep_answer(self, receipt: Receipt, status: int, body: str) -> None:
        """Store the answer the sender got with its request (when the request was stored)."""
        if receipt.request_id is not None:
            self.ledger.requests.answer(receipt.request_id, status, body[: self.settings.max_body])

    def worker_alive(self) -> bool:
        return self.ledger.coordination.workers_alive(within=WORKER_STALE) > 0

    def close(self) -> None:
        if self.dispatcher.alerts is not None:
            self.dispatcher.alerts.close()
        for account in self.dispatcher.accounts.values():
            account.client.close()
        self.ledger.dispose()
