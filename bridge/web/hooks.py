"""`POST /hooks/<route>`: the sender-facing endpoint.

Its answers and its errors alike reach a sender with an envelope of its own (Salesforce's SOAP)
in that envelope: `bridge.web.problems.render` looks the route up by this view's `name`.
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from bridge.web import answer_response, get_bridge, inbound_request

bp = Blueprint("hooks", __name__)

_TRUE = {"1", "true", "yes", "on"}


@bp.post("/hooks/<name>")
def receive(name: str) -> Response:
    bridge = get_bridge()
    route = bridge.route(name)
    inbound = inbound_request(request, bridge.settings.public_url)
    dry_run = request.args.get("dry_run", "").lower() in _TRUE
    answer = bridge.receive(route, inbound, dry_run=dry_run)
    return answer_response(answer)
