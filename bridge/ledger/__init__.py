"""The ledger: durable record and queue of deliveries and the state every bridge process
shares (rate limit, links, canceled events, webhook receipts, worker heartbeats)."""

from __future__ import annotations

from bridge.ledger.store import (
    FINAL_OUTCOMES,
    STATUSES,
    AttemptStart,
    CanceledRecord,
    Delivery,
    Ledger,
    Link,
    NewDelivery,
    new_delivery_id,
)

__all__ = [
    "FINAL_OUTCOMES",
    "STATUSES",
    "AttemptStart",
    "CanceledRecord",
    "Delivery",
    "Ledger",
    "Link",
    "NewDelivery",
    "new_delivery_id",
]
