"""The sandbox's Flask app: MeetBit's Cancel Event route, plus `/_sandbox/` introspection and
knobs, and the vendor fakes (vendors/) mounted under `/<name>`. The views only translate HTTP;
the state (state.py) does the work."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request
from marshmallow import RAISE, Schema, ValidationError, validate
from marshmallow import fields as mf
from werkzeug.exceptions import MethodNotAllowed, NotFound

from bridge.sandbox.answers import NOT_FOUND, json_response, text_response
from bridge.sandbox.config import ConfigSchema, SandboxConfig, check_config
from bridge.sandbox.events import generate_event
from bridge.sandbox.state import SandboxState
from bridge.sandbox.vendors import VendorFake, default_vendors

__all__ = [
    "API_PREFIX",
    "EXTENSION",
    "VENDORS_EXTENSION",
    "SandboxState",
    "create_sandbox_app",
    "generate_event",
]

EXTENSION = "meetbit_sandbox"
VENDORS_EXTENSION = "meetbit_sandbox_vendors"
API_PREFIX = "/api/public/v2.0"

meetbit = Blueprint("meetbit", __name__, url_prefix=API_PREFIX)
introspection = Blueprint("sandbox", __name__, url_prefix="/_sandbox")


class _ScheduleSchema(Schema):
    """`POST /_sandbox/schedule`: book an event for a customer."""

    class Meta:
        unknown = RAISE

    email = mf.Email(required=True)
    name = mf.String(allow_none=True, load_default=None)
    calendar_id = mf.Integer(load_default=1, validate=validate.Range(min=1))
    event_id = mf.Integer(load_default=None, allow_none=True, validate=validate.Range(min=1))


class _NotAnObject(Exception):
    """The body is not a JSON object."""


def _state() -> SandboxState:
    state: SandboxState = current_app.extensions[EXTENSION]
    return state


def _load(schema: Schema, **kwargs: Any) -> dict[str, Any]:
    """The JSON object body loaded by `schema` (which raises ValidationError)."""
    try:
        body = json.loads(request.get_data() or b"{}")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise _NotAnObject()
    loaded: dict[str, Any] = schema.load(body, **kwargs)
    return loaded


@meetbit.post("/calendars/<int:calendar_id>/events/<int:event_id>/cancel")
def cancel_event(calendar_id: int, event_id: int) -> Response:
    _state().seen_headers.record(calendar_id, event_id, dict(request.headers))
    return _state().handle_cancel(
        calendar_id,
        event_id,
        request.headers.get("X-Access-Key-Id", ""),
        request.headers.get("X-Access-Key-Secret", ""),
        request.get_data(cache=False),
    )


@introspection.get("/calls")
def calls() -> Response:
    return json_response(200, _state().snapshot_calls())


@introspection.get("/headers")
def headers() -> Response:
    return json_response(200, _state().seen_headers.snapshot())


@introspection.get("/stats")
def stats() -> Response:
    return json_response(200, _state().stats())


@introspection.post("/reset")
def reset() -> Response:
    _state().reset()
    return json_response(200, {"reset": True})


@introspection.get("/config")
def get_config() -> Response:
    return json_response(200, _state().public_config())


@introspection.patch("/config")
def patch_config() -> Response:
    _state().update_config(_load(ConfigSchema(), partial=True))
    return json_response(200, _state().public_config())


@introspection.post("/schedule")
def schedule() -> Response:
    args = _load(_ScheduleSchema())
    answer = _state().schedule(args["email"], args["name"], args["calendar_id"], args["event_id"])
    return json_response(201, answer)


@introspection.errorhandler(_NotAnObject)
def not_an_object(exc: _NotAnObject) -> Response:
    return json_response(400, {"message": "Send a JSON object.", "errors": {}})


@introspection.errorhandler(ValidationError)
def invalid(exc: ValidationError) -> Response:
    errors = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
    return json_response(400, {"message": "Invalid sandbox request.", "errors": errors})


def _vendor_for(path: str, vendors: dict[str, VendorFake]) -> VendorFake | None:
    name = path.split("/", 2)[1] if path.count("/") >= 1 else ""
    return vendors.get(name)


def create_sandbox_app(config: SandboxConfig | None = None) -> Flask:
    """The sandbox Flask app. The config object is used as is, so changing it changes the app.

    The vendor fakes are `app.extensions[VENDORS_EXTENSION]` (by mount name); under a server
    whose origin is known (`SandboxServer`) their `base_url` is set, else it is
    `<origin>/<name>` of wherever the app is served.
    """
    config = config if config is not None else SandboxConfig()
    check_config(config)
    app = Flask("bridge.sandbox")
    app.extensions[EXTENSION] = SandboxState(config)
    vendors = default_vendors()
    app.extensions[VENDORS_EXTENSION] = vendors
    app.register_blueprint(meetbit)
    app.register_blueprint(introspection)
    for name, fake in vendors.items():
        app.register_blueprint(fake.blueprint(f"/{name}"))

    @app.errorhandler(NotFound)
    def not_found(exc: NotFound) -> Response | NotFound:
        # Under the API, MeetBit's own text; under a vendor's prefix, the vendor's answer;
        # elsewhere werkzeug's page.
        if request.path.startswith(API_PREFIX):
            return text_response(404, NOT_FOUND)
        fake = _vendor_for(request.path, vendors)
        if fake is not None:
            return fake.unrouted(request.path, 404)
        return exc

    @app.errorhandler(MethodNotAllowed)
    def not_allowed(exc: MethodNotAllowed) -> Response | MethodNotAllowed:
        fake = _vendor_for(request.path, vendors)
        if fake is not None:
            return fake.unrouted(request.path, 405)
        return exc

    return app
