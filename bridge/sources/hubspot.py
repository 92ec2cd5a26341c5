"""HubSpot presets: app webhooks (signed event batches) and the workflow "Send a webhook" action.

Signatures: https://developers.hubspot.com/docs/api/webhooks/validating-requests
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from bridge.core.limits import bounded_key
from bridge.errors import BadRequest, Unauthorized
from bridge.sources.auth import (
    check_auth,
    check_timestamp,
    decode_base64,
    decode_hex,
    hmac_sha256,
    matches_any,
    parse_epoch,
    reject_unused,
    require_header,
    to_bytes,
)
from bridge.sources.base import (
    InboundRequest,
    Item,
    Parsed,
    Source,
    SourceOptions,
    body_hash_key,
    get_header,
)

V3_HEADER = "X-HubSpot-Signature-v3"
TIMESTAMP_HEADER = "X-HubSpot-Request-Timestamp"
LEGACY_HEADER = "X-HubSpot-Signature"
VERSION_HEADER = "X-HubSpot-Signature-Version"

# v3 signs the URI with these escapes decoded; HubSpot's own Python SDK decodes nothing, so both
# forms are tried (both still need the client secret).
# https://developers.hubspot.com/docs/apps/developer-platform/build-apps/authentication/request-validation
_V3_ESCAPES = re.compile(r"%(3A|2F|3F|40|21|24|27|28|29|2A|2C|3B)", re.IGNORECASE)


def v3_uri(url: str) -> str:
    return _V3_ESCAPES.sub(lambda m: chr(int(m.group(1), 16)), url)


def has_signature(request: InboundRequest) -> bool:
    return (
        get_header(request, V3_HEADER) is not None or get_header(request, LEGACY_HEADER) is not None
    )


def verify_signature(request: InboundRequest, secrets: tuple[str, ...], tolerance: float) -> None:
    """v3 when its header is present, else v1/v2 as `X-HubSpot-Signature-Version` says."""
    method = request.method.upper()
    v3 = get_header(request, V3_HEADER)
    if v3 is not None:
        raw_timestamp = require_header(request, TIMESTAMP_HEADER)
        millis = parse_epoch(raw_timestamp, header=TIMESTAMP_HEADER, unit="milliseconds")
        check_timestamp(millis / 1000, received_at=request.received_at, tolerance=tolerance)
        given = decode_base64(v3)
        uris = dict.fromkeys((v3_uri(request.url), request.url))
        expected = [
            hmac_sha256(
                to_bytes(secret),
                to_bytes(method + uri) + request.body + to_bytes(raw_timestamp),
            )
            for secret in secrets
            for uri in uris
        ]
        if not matches_any(expected, given):
            raise Unauthorized(
                "the HubSpot v3 signature does not match", reason="signature_mismatch"
            )
        return

    signature = get_header(request, LEGACY_HEADER)
    if signature is None:
        raise Unauthorized(
            f"neither {V3_HEADER} nor {LEGACY_HEADER} is present", reason="missing_header"
        )
    version = require_header(request, VERSION_HEADER).lower()
    if version == "v1":
        # v1 is a plain SHA-256 of secret + body (not an HMAC); it is HubSpot's scheme, not ours.
        signed = [to_bytes(secret) + request.body for secret in secrets]
    elif version == "v2":
        signed = [to_bytes(secret + method + request.url) + request.body for secret in secrets]
    else:
        raise Unauthorized(
            f"HubSpot signature version {version!r} is not supported", reason="unsupported_version"
        )
    given = decode_hex(signature)
    if not matches_any((hashlib.sha256(data).digest() for data in signed), given):
        raise Unauthorized(
            f"the HubSpot {version} signature does not match", reason="signature_mismatch"
        )


class HubSpotSource(Source):
    """App webhooks: a JSON array of events, one item per `eventId`."""

    name = "hubspot"
    signature_headers = (V3_HEADER, LEGACY_HEADER)
    default_when = "event.propertyName == 'dealstage' and event.propertyValue == 'closedlost'"
    # HubSpot batches events and times out within seconds: record, answer, deliver later.
    default_respond = "ack"
    batch = True

    def __init__(self, options: SourceOptions) -> None:
        super().__init__(options)
        reject_unused(self.name, options, secrets=True, auth=True)
        if not options.secrets:
            raise ValueError(f"{self.name}: secret_env (the app's client secret) is required")

    def verify(self, request: InboundRequest) -> None:
        verify_signature(request, self.options.secrets, self.options.tolerance)
        if self.options.auth is not None:
            check_auth(self.options.auth, request)

    def parse(self, request: InboundRequest) -> Parsed:
        payload = self.parse_body(request)
        if not isinstance(payload, list):
            raise BadRequest("HubSpot app webhooks send a JSON array of events")
        items: list[Item] = []
        seen: set[str] = set()
        for index, event in enumerate(payload):
            if not isinstance(event, dict):
                raise BadRequest(f"event {index} of the HubSpot batch is not an object")
            key = self._event_key(request, event, index)
            if key in seen:
                continue  # the same event twice in one batch: the first one wins
            seen.add(key)
            items.append(Item(event, key))
        return Parsed(payload=payload, items=items)

    @staticmethod
    def _event_key(request: InboundRequest, event: dict[str, Any], index: int) -> str:
        event_id = event.get("eventId")
        if isinstance(event_id, (int, str)) and not isinstance(event_id, bool) and event_id != "":
            return bounded_key(str(event_id))
        return f"{body_hash_key(request.body)}#{index}"


class HubSpotWorkflowSource(Source):
    """The workflow "Send a webhook" action: signed with an app's secret, or a configured key."""

    name = "hubspot-workflow"
    signature_headers = (V3_HEADER, LEGACY_HEADER)
    requires_when = True

    def __init__(self, options: SourceOptions) -> None:
        super().__init__(options)
        reject_unused(self.name, options, secrets=True, auth=True)
        if not options.secrets and options.auth is None:
            raise ValueError(f"{self.name}: needs secret_env (app client secret) or auth")

    def verify(self, request: InboundRequest) -> None:
        if self.options.secrets and (has_signature(request) or self.options.auth is None):
            verify_signature(request, self.options.secrets, self.options.tolerance)
        elif self.options.auth is not None:
            check_auth(self.options.auth, request)
