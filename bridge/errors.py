"""The bridge's error hierarchy and the one renderer that turns every error into problem+json.

Each class carries its HTTP status, title and type slug; views raise, they never build an error
response themselves. werkzeug's own HTTP errors (404, 405, 413, 415, ...) go through the same
renderer, and anything unexpected becomes a bare 500 problem without a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from flask import Flask, Response, g, has_request_context, json
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:meetbit-bridge:problem:"


class ConfigError(Exception):
    """Startup configuration is missing or invalid; `problems` names every culprit at once."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid configuration:\n  - " + "\n  - ".join(self.problems))


class BridgeError(Exception):
    """Base of every error a client can be answered with."""

    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"
    slug: ClassVar[str] = "internal"

    def __init__(
        self,
        detail: str,
        *,
        reason: str | None = None,
        errors: Mapping[str, Sequence[str]] | None = None,
        delivery_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        # Machine-readable cause (e.g. `signature_mismatch`): a log field and a metric label.
        self.reason = reason
        self.errors = {k: list(v) for k, v in errors.items()} if errors else None
        self.delivery_id = delivery_id
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def to_problem(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": TYPE_PREFIX + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.reason:
            body["reason"] = self.reason
        if self.errors:
            body["errors"] = self.errors
        if self.delivery_id:
            body["delivery_id"] = self.delivery_id
        body.update(self.extra)
        return body


class BadRequest(BridgeError):
    status, title, slug = 400, "Bad request", "bad-request"


class Unauthorized(BridgeError):
    status, title, slug = 401, "Unauthorized", "unauthorized"


class NotFound(BridgeError):
    status, title, slug = 404, "Not found", "not-found"


class EventNotFound(BridgeError):
    status, title, slug = 404, "MeetBit event not found", "event-not-found"


class MethodNotAllowed(BridgeError):
    status, title, slug = 405, "Method not allowed", "method-not-allowed"


class InFlight(BridgeError):
    status, title, slug = 409, "Delivery in flight", "in-flight"


class PayloadTooLarge(BridgeError):
    status, title, slug = 413, "Payload too large", "payload-too-large"


class UnsupportedMediaType(BridgeError):
    status, title, slug = 415, "Unsupported media type", "unsupported-media-type"


class MappingError(BridgeError):
    status, title, slug = 422, "Payload does not map to a cancel", "mapping-error"


class InvalidBody(BridgeError):
    status, title, slug = 422, "Invalid request body", "invalid-body"


class InvalidQuery(BridgeError):
    status, title, slug = 422, "Invalid query parameters", "invalid-query"


class InvalidPath(BridgeError):
    status, title, slug = 422, "Invalid path parameter", "invalid-path"


class UpstreamError(BridgeError):
    status, title, slug = 502, "MeetBit call failed", "meetbit-error"


class LedgerUnavailable(BridgeError):
    status, title, slug = 503, "Ledger unavailable", "ledger-unavailable"

    def __init__(self, detail: str = "the ledger database cannot be reached", **kw: Any) -> None:
        kw.setdefault("headers", {"Retry-After": "5"})
        super().__init__(detail, **kw)


# werkzeug's HTTP exceptions mapped onto ours, so even routing errors are problem+json.
_HTTP_CLASSES: dict[int, type[BridgeError]] = {
    400: BadRequest,
    401: Unauthorized,
    404: NotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
}


def problem_response(err: BridgeError) -> Response:
    problem = err.to_problem()
    if has_request_context():
        # Read by the metrics hook: the status alone does not say why a request was refused.
        g.problem_reason = err.reason or err.slug
    # A sender with its own answer envelope (Salesforce's SOAP) gets its errors in it too; the
    # hook view sets `g.envelope` to the route's `Source.acknowledge` once the route is known.
    envelope = g.get("envelope") if has_request_context() else None
    wrapped = envelope(err.status, problem) if envelope else None
    if wrapped is not None:
        body, status, content_type = wrapped
        response = Response(body, status=status, content_type=content_type)
    else:
        response = Response(json.dumps(problem), status=err.status, mimetype=PROBLEM_JSON)
    for name, value in err.headers.items():
        response.headers[name] = value
    return response


def _from_http(exc: HTTPException) -> BridgeError:
    code = exc.code or 500
    cls = _HTTP_CLASSES.get(code)
    detail = exc.description or exc.name
    if cls is None:
        err = BridgeError(detail)
        err.status = code  # type: ignore[misc]  # instance-level status for rare codes
        return err
    headers = {}
    valid_methods = getattr(exc, "valid_methods", None)  # set on werkzeug's MethodNotAllowed
    if code == 405 and valid_methods:
        headers["Allow"] = ", ".join(valid_methods)
    return cls(detail, headers=headers)


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(BridgeError)
    def _bridge_error(err: BridgeError) -> Response:
        if err.status >= 500:
            log.warning("answered %s: %s", err.status, err.detail, extra={"reason": err.reason})
        return problem_response(err)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        return problem_response(_from_http(exc))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        # A bug, never the client's fault: log it with the traceback, answer without one.
        log.exception("unhandled error")
        return problem_response(BridgeError("an unexpected error occurred; it has been logged"))
