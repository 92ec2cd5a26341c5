"""Turn a verified, parsed webhook into ledger rows: one per cancel command, ignored item or
mapping error, resolving `customer_email` / `link` targets through the link store.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from bridge.core.mapping import CancelCommand, Ignored, LinkLookup, context, decide
from bridge.delivery import write_backs
from bridge.delivery.routes import Route
from bridge.errors import MappingError
from bridge.ledger import Link, NewDelivery
from bridge.sources import InboundRequest, Parsed

# The link store's look-up: the links stored under a key (an email, a link key).
FindLinks = Callable[[str], Sequence[Link]]


def plan(
    route: Route,
    parsed: Parsed,
    inbound: InboundRequest,
    links: FindLinks,
    *,
    request_id: str | None = None,
    x_request_id: str | None = None,
    traceparent: str | None = None,
) -> list[NewDelivery]:
    """The rows of every item; `request_id`: the stored request they come from;
    `x_request_id`: the webhook's X-Request-Id."""
    rows: list[NewDelivery] = []
    for item in parsed.items:
        ctx = context(
            payload=parsed.payload,
            event=item.event,
            headers=inbound.headers,
            query=inbound.query,
            route=route.name,
        )
        base: dict[str, Any] = {
            "route": route.name,
            "idempotency_key": item.idempotency_key,
            "max_attempts": route.max_attempts,
            "max_age": route.max_age,
            "request_id": request_id,
            "x_request_id": x_request_id,
            "traceparent": traceparent,
        }
        try:
            decision = decide(route.mapping, ctx)
            commands = _commands(decision, links)
        except MappingError as exc:
            rows.append(
                NewDelivery(
                    **base, status="failed", outcome="mapping_error", error=exc.to_problem()
                )
            )
            continue
        if isinstance(decision, Ignored):
            rows.append(
                NewDelivery(
                    **base, status="ignored", outcome="ignored", error={"reason": decision.reason}
                )
            )
            continue
        planned = write_backs.plan(route, ctx)
        rows += [
            NewDelivery(
                **base,
                seq=seq,
                calendar_id=c.calendar_id,
                event_id=c.event_id,
                note=c.note,
                write_back=planned,
            )
            for seq, c in enumerate(commands)
        ]
    return rows


def _commands(
    decision: CancelCommand | LinkLookup | Ignored, lookup: FindLinks
) -> list[CancelCommand]:
    if isinstance(decision, CancelCommand):
        return [decision]
    if isinstance(decision, Ignored):
        return []
    links = sorted(lookup(decision.key), key=lambda link: (link.calendar_id, link.event_id))
    if not links:
        what = "email" if decision.kind == "customer_email" else "link key"
        raise MappingError(
            f"no MeetBit event is linked to this {what}",
            errors={f"target.{decision.kind}": [f"unknown {what}: {decision.key[:80]!r}"]},
        )
    return [CancelCommand(link.calendar_id, link.event_id, decision.note) for link in links]
