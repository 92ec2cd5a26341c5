"""The admin API (`/admin/*`), bearer-token protected; 404 when no token is configured."""

from __future__ import annotations

import hmac
import json
from typing import Any

from flask import Blueprint, Response, jsonify, request
from marshmallow import Schema, ValidationError
from werkzeug.exceptions import NotFound as HTTPNotFound

from bridge.delivery import answers
from bridge.delivery.service import Bridge
from bridge.errors import BadRequest, InvalidBody, NotFound, Unauthorized
from bridge.ledger import Delivery
from bridge.web import answer_response, get_bridge
from bridge.web.schemas import (
    MAX_LINK_KEY,
    DeliveryListSchema,
    DeliveryQuerySchema,
    DeliverySchema,
    LinkBodySchema,
    LinkListSchema,
    LinkQuerySchema,
    invalid_body,
    link_key,
)

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
    scheme, _, given = request.headers.get("Authorization", "").strip().partition(" ")
    challenge = {"WWW-Authenticate": 'Bearer realm="meetbit-bridge admin"'}
    if scheme.lower() != "bearer" or not given.strip():
        raise Unauthorized("send Authorization: Bearer <BRIDGE_ADMIN_TOKEN>", headers=challenge)
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        challenge["WWW-Authenticate"] += ', error="invalid_token"'
        raise Unauthorized("the admin token is not valid", reason="bad_token", headers=challenge)


# -- deliveries -------------------------------------------------------------------------------


@bp.get("/deliveries")
def list_deliveries() -> Response:
    query = _load(DeliveryQuerySchema(), request.args.to_dict(), "invalid delivery filters")
    try:
        page, cursor = get_bridge().ledger.queries.deliveries(**query)
    except ValueError as exc:  # the only input the schema cannot check is the cursor's content
        raise InvalidBody("invalid delivery filters", errors={"cursor": [str(exc)]}) from exc
    return jsonify(DeliveryListSchema().dump({"deliveries": page, "next_cursor": cursor}))


@bp.get("/deliveries/<delivery_id>")
def show_delivery(delivery_id: str) -> Response:
    return jsonify(DeliverySchema().dump(_delivery(get_bridge(), delivery_id)))


@bp.post("/deliveries/<delivery_id>/replay")
def replay_delivery(delivery_id: str) -> Response:
    bridge = get_bridge()
    delivery = bridge.replay(_delivery(bridge, delivery_id))
    answer = answers.answer([delivery], replayed=False, worker_alive=bridge.worker_alive())
    return answer_response(answer)


def _delivery(bridge: Bridge, delivery_id: str) -> Delivery:
    delivery = bridge.ledger.deliveries.get(delivery_id)
    if delivery is None:
        raise NotFound(f"no delivery {delivery_id!r}")
    return delivery


# -- links ------------------------------------------------------------------------------------


@bp.put("/links/<path:key>")
def put_link(key: str) -> Response:
    key = link_key(key)
    if not key or len(key) > MAX_LINK_KEY:
        raise InvalidBody(
            "invalid link key", errors={"key": [f"must be 1 to {MAX_LINK_KEY} characters"]}
        )
    body = _load(LinkBodySchema(), _json_body(), "invalid link")
    ledger = get_bridge().ledger
    created = ledger.links.put(key, body["calendar_id"], body["event_id"])
    response = jsonify(LinkListSchema().dump({"key": key, "links": ledger.links.get(key)}))
    if created:
        response.status_code = 201
        response.headers["Location"] = request.path
    return response


@bp.get("/links/<path:key>")
def get_links(key: str) -> Response:
    key = link_key(key)
    links = get_bridge().ledger.links.get(key)
    if not links:
        raise NotFound(f"no link is stored under {key!r}")
    return jsonify(LinkListSchema().dump({"key": key, "links": links}))


@bp.delete("/links/<path:key>")
def delete_links(key: str) -> Response:
    key = link_key(key)
    which = _load(LinkQuerySchema(), request.args.to_dict(), "invalid link filters")
    if get_bridge().ledger.links.delete(key, **which) == 0:
        raise NotFound(f"no matching link is stored under {key!r}")
    return Response(status=204)


# -- helpers ----------------------------------------------------------------------------------


def _load(schema: Schema, data: Any, detail: str) -> dict[str, Any]:
    try:
        loaded: dict[str, Any] = schema.load(data)
    except ValidationError as exc:
        raise invalid_body(exc, detail) from exc
    return loaded


def _json_body() -> Any:
    """The body as JSON whatever its Content-Type (`curl -d` sends a form type)."""
    try:
        return json.loads(request.get_data(cache=True))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("the body is not valid JSON", reason="bad_json") from exc
