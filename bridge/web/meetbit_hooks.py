"""`POST /meetbit/webhooks`: MeetBit's own signed webhooks (links, external cancels)."""

from __future__ import annotations

import time

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import NotFound as HTTPNotFound

from bridge.delivery import meetbit_events
from bridge.web import get_bridge, lower_headers

bp = Blueprint("meetbit_hooks", __name__)


@bp.post("/meetbit/webhooks")
def receive() -> Response:
    bridge = get_bridge()
    secret = bridge.settings.meetbit_webhook_secret
    if secret is None:
        raise HTTPNotFound()  # not configured: absent, like any unknown URL
    body = request.get_data(cache=True)
    status = meetbit_events.receive(
        bridge.ledger, secret, lower_headers(request), body, now=time.time()
    )
    return jsonify(status=status)
