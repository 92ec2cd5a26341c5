"""`POST /hooks/<route>`: the sender-facing endpoint.

Its answers and its errors alike reach a sender with an envelope of its own (Salesforce's SOAP)
in that envelope: `bridge.web.problems.render` looks the route up by this view's `name`.
The request that recorded a delivery is kept with the answer its sender got, error answers
included: `_keep_answer` runs after the one renderer, whatever it rendered.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, g, request

from bridge.delivery.service import Receipt
from bridge.errors import LedgerUnavailable
from bridge.web import answer_response, get_bridge, inbound_request, requestids

log = logging.getLogger(__name__)

bp = Blueprint("hooks", __name__)

_TRUE = {"1", "true", "yes", "on"}


@bp.post("/hooks/<name>")
def receive(name: str) -> Response:
    bridge = get_bridge()
    route = bridge.route(name)
    inbound = inbound_request(request, bridge.settings.public_url)
    dry_run = request.args.get("dry_run", "").lower() in _TRUE
    g.receipt = receipt = Receipt()
    answer = bridge.receive(
        route, inbound, dry_run=dry_run, receipt=receipt, x_request_id=requestids.current()
    )
    return answer_response(answer)


@bp.after_request
def _keep_answer(response: Response) -> Response:
    receipt: Receipt | None = g.get("receipt")
    if receipt is not None and receipt.request_id is not None:
        try:
            get_bridge().keep_answer(receipt, response.status_code, response.get_data(as_text=True))
        except LedgerUnavailable:
            # The deliveries are recorded and the sender is answered; only the copy of the
            # answer is missing.
            log.warning("the answer of request %s was not stored", receipt.request_id)
    return response
