"""Zendesk webhooks: base64 HMAC-SHA256 of the ISO timestamp header followed by the raw body.

https://developer.zendesk.com/documentation/webhooks/verifying/
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bridge.core.limits import bounded_key
from bridge.errors import Unauthorized
from bridge.sources.auth import (
    check_auth,
    check_timestamp,
    decode_base64,
    hmac_sha256,
    matches_any,
    reject_unused,
    require_header,
    to_bytes,
)
from bridge.sources.base import (
    InboundRequest,
    Source,
    SourceOptions,
    body_hash_key,
    get_header,
)

SIGNATURE_HEADER = "X-Zendesk-Webhook-Signature"
TIMESTAMP_HEADER = "X-Zendesk-Webhook-Signature-Timestamp"
INVOCATION_HEADER = "X-Zendesk-Webhook-Invocation-Id"

# Event-subscribed webhooks say `zen:event-type:ticket.status_changed` with `event.current`;
# trigger bodies are the user's own, usually `{"status": "{{ticket.status}}"}`. Status casing is
# not documented, hence `lower`.
STATUS_SOLVED_OR_CLOSED = (
    "(event.type is string and event.type.endswith('ticket.status_changed')"
    " and (event.event.current | lower) in ('solved', 'closed'))"
    " or (event.status | lower) in ('solved', 'closed')"
)


def parse_timestamp(value: str) -> float:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise Unauthorized(f"{TIMESTAMP_HEADER} is not ISO 8601", reason="bad_timestamp") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


class ZendeskSource(Source):
    name = "zendesk"
    signature_headers = (SIGNATURE_HEADER,)
    default_when = STATUS_SOLVED_OR_CLOSED
    accepts_form = True  # trigger webhooks may be configured as form-encoded

    def __init__(self, options: SourceOptions) -> None:
        super().__init__(options)
        reject_unused(self.name, options, secrets=True, auth=True)
        if not options.secrets:
            raise ValueError(f"{self.name}: secret_env (the webhook signing secret) is required")

    def verify(self, request: InboundRequest) -> None:
        signature = require_header(request, SIGNATURE_HEADER)
        timestamp = require_header(request, TIMESTAMP_HEADER)
        check_timestamp(
            parse_timestamp(timestamp),
            received_at=request.received_at,
            tolerance=self.options.tolerance,
        )
        given = decode_base64(signature)
        # The key is the signing secret string as-is, even though it looks like base64.
        message = to_bytes(timestamp) + request.body
        expected = (hmac_sha256(to_bytes(secret), message) for secret in self.options.secrets)
        if not matches_any(expected, given):
            raise Unauthorized("the Zendesk signature does not match", reason="signature_mismatch")
        if self.options.auth is not None:
            check_auth(self.options.auth, request)

    def item_key(self, request: InboundRequest, payload: Any) -> str:
        invocation = (get_header(request, INVOCATION_HEADER) or "").strip()
        if invocation:
            return bounded_key(invocation)
        event_id = payload.get("id") if isinstance(payload, dict) else None
        if isinstance(event_id, (str, int)) and not isinstance(event_id, bool) and event_id != "":
            return bounded_key(str(event_id))
        return body_hash_key(request.body)
