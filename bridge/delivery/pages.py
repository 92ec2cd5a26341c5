"""What the console's pages show, read through the admin operations and the ledger's queries:
the overview's figures, the log with its search, one delivery's whole story."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bridge.delivery import admin
from bridge.delivery.admin import DeliveryQuery, Page
from bridge.delivery.service import WORKER_STALE
from bridge.errors import NotFound
from bridge.ledger import Delivery, Ledger

if TYPE_CHECKING:
    from bridge.delivery.routes import Route
    from bridge.delivery.service import Bridge


@dataclass(frozen=True)
class Overview:
    by_status: dict[str, int]
    oldest_pending: float | None
    workers_alive: int
    rate_limit: float

    @property
    def queued(self) -> int:
        return sum(self.by_status.get(s, 0) for s in ("pending", "in_flight"))


def overview(bridge: Bridge) -> Overview:
    ledger = bridge.ledger
    return Overview(
        by_status=ledger.queries.counts_by_status(),
        oldest_pending=ledger.queries.oldest_pending_age(),
        workers_alive=ledger.coordination.workers_alive(within=WORKER_STALE),
        rate_limit=bridge.settings.meetbit_rate_limit,
    )


def search_deliveries(ledger: Ledger, query: DeliveryQuery, search: str) -> Page[Delivery]:
    """The log's page; a search names one delivery by its id."""
    if not search:
        return admin.list_deliveries(ledger, query)
    try:
        return Page([admin.get_delivery(ledger, search)], None)
    except NotFound:
        return Page([], None)


@dataclass(frozen=True)
class DeliveryDetail:
    delivery: Delivery
    attempts: list[dict[str, Any]]
    route: Route | None
    answer: dict[str, Any] | None = None
    request: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def delivery_detail(bridge: Bridge, delivery_id: str) -> DeliveryDetail:
    delivery = admin.get_delivery(bridge.ledger, delivery_id)
    return DeliveryDetail(
        delivery=delivery,
        attempts=bridge.ledger.attempts.history(delivery.id),
        route=bridge.routes.get(delivery.route),
    )
