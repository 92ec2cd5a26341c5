"""The admin API (`/admin/*`), bearer-token protected; 404 when no token is configured."""

from __future__ import annotations

import hmac
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import NotFound as HTTPNotFound

from bridge import jsonbody
from bridge.delivery import admin as operations
from bridge.errors import TooManyAttempts, Unauthorized
from bridge.web import answer_response, get_bridge
from bridge.web.schemas import (
    DeliveryDetailSchema,
    DeliveryListSchema,
    DeliveryQuerySchema,
    LinkBodySchema,
    LinkListSchema,
    LinkPageQuerySchema,
    LinkPageSchema,
    LinkQuerySchema,
    load_body,
    load_query,
)
from bridge.web.throttle import FailedTokens

bp = Blueprint("admin", __name__, url_prefix="/admin")

PREFIX = "/admin"


@bp.before_app_request
def _authorize() -> None:
    """Guard every `/admin` URL, including unknown ones and wrong methods, which never reach a
    blueprint-level hook: without a token the whole API is absent, not merely locked."""
    if request.path != PREFIX and not request.path.startswith(PREFIX + "/"):
        return
    token = get_bridge().settings.admin_token
    if token is None:
        raise HTTPNotFound()
    failures: FailedTokens = current_app.extensions["admin_failures"]
    address = request.remote_addr or "-"
    if (wait := failures.retry_after(address)) is not None:
        raise TooManyAttempts(
            f"too many wrong admin tokens from this address; try again in {wait} s",
            reason="too_many_failures",
            headers={"Retry-After": str(wait)},
        )
    scheme, _, given = request.headers.get("Authorization", "").strip().partition(" ")
    challenge = {"WWW-Authenticate": 'Bearer realm="meetbit-bridge admin"'}
    if scheme.lower() != "bearer" or not given.strip():
        raise Unauthorized("send Authorization: Bearer <BRIDGE_ADMIN_TOKEN>", headers=challenge)
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        failures.failed(address)
        challenge["WWW-Authenticate"] += ', error="invalid_token"'
        raise Unauthorized("the admin token is not valid", reason="bad_token", headers=challenge)


# -- deliveries -------------------------------------------------------------------------------


@bp.get("/deliveries")
def list_deliveries() -> Response:
    query = load_query(DeliveryQuerySchema(), request.args, "invalid delivery filters")
    return jsonify(
        DeliveryListSchema().dump(operations.list_deliveries(get_bridge().ledger, query))
    )


@bp.get("/deliveries/<delivery_id>")
def show_delivery(delivery_id: str) -> Response:
    detail = operations.get_delivery_detail(get_bridge().ledger, delivery_id)
    return jsonify(DeliveryDetailSchema().dump(detail))


@bp.post("/deliveries/<delivery_id>/replay")
def replay_delivery(delivery_id: str) -> Response:
    bridge = get_bridge()
    selection = operations.select_replay(bridge.ledger, [delivery_id])
    return answer_response(operations.replay(bridge, selection).answer())


# -- links ------------------------------------------------------------------------------------


@bp.get("/links")
def list_links() -> Response:
    page = load_query(LinkPageQuerySchema(), request.args, "invalid link filters")
    return jsonify(LinkPageSchema().dump(operations.list_links(get_bridge().ledger, page)))


@bp.put("/links/<path:key>")
def put_link(key: str) -> Response:
    body = load_body(LinkBodySchema(), _json_body(), "invalid link")
    stored = operations.put_link(get_bridge().ledger, key, body["calendar_id"], body["event_id"])
    response = jsonify(LinkListSchema().dump(stored))
    if stored.created:
        response.status_code = 201
        response.headers["Location"] = request.path
    return response


@bp.get("/links/<path:key>")
def get_links(key: str) -> Response:
    return jsonify(LinkListSchema().dump(operations.links_of(get_bridge().ledger, key)))


@bp.delete("/links/<path:key>")
def delete_links(key: str) -> Response:
    which = load_query(LinkQuerySchema(), request.args, "invalid link filters")
    operations.delete_links(get_bridge().ledger, key, **which)
    return Response(status=204)


# -- helpers ----------------------------------------------------------------------------------


def _json_body() -> Any:
    """The body as JSON whatever its Content-Type (`curl -d` sends a form type), its nesting
    bounded before it is parsed."""
    return jsonbody.loads(request.get_data(cache=True))
