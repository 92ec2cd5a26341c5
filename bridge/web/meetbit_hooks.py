"""`POST /meetbit/webhooks`: MeetBit's own signed webhooks (links, external cancels)."""

from __future__ import annotations

import time

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import NotFound as HTTPNotFound

from bridge.ledger import Ledger
from bridge.meetbit.webhooks import (
    EventDeleted,
    LinkScheduled,
    MeetBitWebhook,
    parse_meetbit_webhook,
    verify_meetbit_webhook,
)
from bridge.web import get_bridge, lower_headers

bp = Blueprint("meetbit_hooks", __name__)


@bp.post("/meetbit/webhooks")
def receive() -> Response:
    bridge = get_bridge()
    secret = bridge.settings.meetbit_webhook_secret
    if secret is None:
        raise HTTPNotFound()  # not configured: absent, like any unknown URL
    body = request.get_data(cache=True)
    headers = lower_headers(request)
    webhook_id = verify_meetbit_webhook(secret, headers, body, now=time.time())
    webhook = parse_meetbit_webhook(body)
    return jsonify(status=apply(bridge.ledger, webhook_id, webhook))


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
