"""The bridge's error hierarchy as plain data: each class carries its HTTP status, title and
type slug, and `to_problem()` gives the RFC 9457 body. No web framework here, so the ledger, the
worker and the CLI can raise and inspect these without loading Flask; `bridge.web.problems`
renders them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

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
        """The RFC 9457 problem object; the HTTP headers (`headers`) are not part of it."""
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


class TooManyAttempts(BridgeError):
    status, title, slug = 429, "Too many failed attempts", "too-many-attempts"


# Seconds a 503 for an unusable ledger asks the sender to wait.
LEDGER_RETRY_AFTER = 5


class LedgerUnavailable(BridgeError):
    status, title, slug = 503, "Ledger unavailable", "ledger-unavailable"

    def __init__(self, detail: str = "the ledger database cannot be reached", **kw: Any) -> None:
        kw.setdefault("headers", {"Retry-After": str(LEDGER_RETRY_AFTER)})
        super().__init__(detail, **kw)


class LedgerSchemaMissing(LedgerUnavailable):
    """The database answers but lacks the ledger's tables, or has an older schema."""

    title, slug = "Ledger schema missing", "ledger-schema"

    def __init__(
        self,
        detail: str = "the ledger database has no ledger schema yet; "
        "run `meetbit-bridge db upgrade`",
        **kw: Any,
    ) -> None:
        super().__init__(detail, **kw)
