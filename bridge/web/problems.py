"""The one renderer: every answer body, success or problem, leaves the bridge through `render`.

`render` is the one place that decides between JSON and a sender's own envelope (Salesforce's
SOAP ack or fault, `Source.acknowledge`). The error handlers turn every exception into an RFC 9457
problem: a `BridgeError` as it says, werkzeug's own HTTP errors (404, 405, 413, 415, ...) with
their headers (`Allow`, ...), and anything unexpected into a bare 500 that is logged with its
traceback and never shows it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, current_app, g, has_request_context, json, request
from werkzeug.exceptions import HTTPException

from bridge.errors import (
    PROBLEM_JSON,
    TYPE_PREFIX,
    BadRequest,
    BridgeError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
)

if TYPE_CHECKING:
    from bridge.delivery.service import Bridge

__all__ = ["Envelope", "problem_response", "register_error_handlers", "render", "sender_envelope"]

log = logging.getLogger(__name__)

JSON = "application/json"
# The sender-facing view (bridge/web/hooks.py): only its answers can carry a sender's envelope.
HOOK_ENDPOINT = "hooks.receive"

# A sender's own answer envelope (`Source.acknowledge`): (status, body) -> (bytes, status, type),
# or None to answer plain JSON.
Envelope = Callable[[int, dict[str, Any]], tuple[bytes, int, str] | None]

# werkzeug's HTTP exceptions as ours, so their problems carry the same types and titles.
_HTTP_CLASSES: dict[int, type[BridgeError]] = {
    400: BadRequest,
    401: Unauthorized,
    404: NotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    500: BridgeError,
}
# The answer to a bug: the message and traceback go to the log, never to the client.
_UNEXPECTED = "an unexpected error occurred; it has been logged"


def sender_envelope() -> Envelope | None:
    """The envelope of the route this request was sent to, when its sender has one of its own.

    Asked of the bridge's configured routes by the view's `name` argument, so that an error the
    view raises (or werkzeug's 413 while the view reads the body) reaches the sender in the same
    envelope as its success answers. Requests to any other endpoint, and to an unknown route,
    are answered JSON.
    """
    if not has_request_context() or request.endpoint != HOOK_ENDPOINT:
        return None
    bridge: Bridge | None = current_app.extensions.get("bridge")
    name = (request.view_args or {}).get("name")
    route = bridge.routes.get(name) if bridge is not None and isinstance(name, str) else None
    return None if route is None else route.source.acknowledge


def render(status: int, body: dict[str, Any], *, mimetype: str = JSON) -> Response:
    """`body` as the response: in the sender's envelope when it has one, JSON otherwise."""
    if has_request_context():
        # What the webhook's log line says it came to (bridge.web.ops): every answer, success
        # or problem, passes here with its outcome and deliveries.
        listed = body.get("deliveries")
        g.answer_outcome = body.get("outcome")
        g.answer_deliveries = (
            [item["id"] for item in listed or () if isinstance(item, dict) and "id" in item]
            if isinstance(listed, list)
            else []
        )
    envelope = sender_envelope()
    wrapped = envelope(status, body) if envelope is not None else None
    if wrapped is not None:
        content, status, content_type = wrapped
        return Response(content, status=status, content_type=content_type)
    return Response(json.dumps(body), status=status, mimetype=mimetype)


def _problem(
    status: int, problem: dict[str, Any], headers: Mapping[str, str], reason: str
) -> Response:
    if has_request_context():
        # Read by the metrics and log hook: the status alone does not say why a request was
        # refused.
        g.problem_reason = reason
        request_id = g.get("request_id")
        if isinstance(request_id, str):
            # The id the on-call person greps the logs for, also in what the client was told.
            problem = {**problem, "request_id": request_id}
    response = render(status, problem, mimetype=PROBLEM_JSON)
    for name, value in headers.items():
        response.headers[name] = value
    return response


def problem_response(err: BridgeError) -> Response:
    return _problem(err.status, err.to_problem(), err.headers, err.reason or err.slug)


def http_problem_response(exc: HTTPException) -> Response:
    """werkzeug's own error as a problem, keeping the headers it sets (`Allow` on a 405)."""
    code = exc.code or 500
    detail = exc.description or exc.name
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
    cls = _HTTP_CLASSES.get(code)
    if cls is not None:
        return problem_response(cls(detail, headers=headers))
    # A status no class of ours stands for (werkzeug knows ~30): its own name as type and title.
    slug = exc.name.lower().replace(" ", "-")
    problem = {"type": TYPE_PREFIX + slug, "title": exc.name, "status": code, "detail": detail}
    return _problem(code, problem, headers, slug)


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(BridgeError)
    def _bridge_error(err: BridgeError) -> Response:
        if err.status >= 500:
            # %r: a detail may quote MeetBit's error body, CR/LF and all; a log line is one line.
            log.warning(
                "answered %s: %r",
                err.status,
                err.detail,
                extra={"status": err.status, "error_kind": err.reason or err.slug},
            )
        return problem_response(err)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        return http_problem_response(exc)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        # A bug, never the client's fault: log it with the traceback, answer without one.
        log.exception("unhandled error", exc_info=exc)
        return problem_response(BridgeError(_UNEXPECTED))
