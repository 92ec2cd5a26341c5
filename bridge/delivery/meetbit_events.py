"""MeetBit's own webhooks applied to the ledger: a booked meeting link stored as a link, an
event deleted in MeetBit remembered as canceled, each webhook id applied once."""

from __future__ import annotations

from collections.abc import Mapping

from bridge.ledger import Ledger
from bridge.meetbit.webhooks import (
    EventDeleted,
    LinkScheduled,
    MeetBitWebhook,
    parse_meetbit_webhook,
    verify_meetbit_webhook,
)


def receive(
    ledger: Ledger, secret: str, headers: Mapping[str, str], body: bytes, *, now: float
) -> str:
    """Verify (on the raw bytes), parse and apply one webhook; `headers` are lower-cased."""
    webhook_id = verify_meetbit_webhook(secret, headers, body, now=now)
    return apply(ledger, webhook_id, parse_meetbit_webhook(body))


def apply(
    ledger: Ledger, webhook_id: str, webhook: LinkScheduled | EventDeleted | MeetBitWebhook
) -> str:
    """Record what the webhook tells; `applied`, `duplicate` or `ignored`.

    Both effects are idempotent and run before the id is remembered, so a crash in between
    leaves MeetBit's retry to apply it again rather than dropping it as a duplicate.
    """
    if isinstance(webhook, LinkScheduled):
        ledger.links.put(webhook.email, webhook.calendar_id, webhook.event_id)
    elif isinstance(webhook, EventDeleted):
        # Our own cancels echo back as events.deleted: the first record (with its event) stays.
        ledger.canceled.mark(webhook.calendar_id, webhook.event_id, source="meetbit", event=None)
    else:
        return "ignored"
    return "applied" if ledger.coordination.remember_webhook(webhook_id) else "duplicate"
