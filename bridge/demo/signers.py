"""Requests signed the way each sender signs them, written from the vendors' documented formulas.

The demo signs its samples with these and the tests sign their requests with them; nothing here
imports the bridge's verifiers (bridge/sources, bridge/meetbit), so a test that signs here and
verifies there checks one implementation against another. The published vectors in
tests/test_sources_*.py pin each formula.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from bridge.sandbox.webhooks import meetbit_timestamp, sign_meetbit_webhook

__all__ = [
    "basic_auth",
    "body_hmac",
    "hubspot_legacy_headers",
    "hubspot_v1",
    "hubspot_v2",
    "hubspot_v3",
    "hubspot_v3_headers",
    "hubspot_v3_uri",
    "meetbit",
    "meetbit_timestamp",
    "meetbit_webhook",
    "standard",
    "standard_headers",
    "tampered",
    "zendesk",
    "zendesk_headers",
]


def _hmac_sha256(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


# -- HubSpot: https://developers.hubspot.com/docs/api/webhooks/validating-requests ------------


def hubspot_v1(secret: str, body: bytes) -> str:
    """v1: hex SHA-256 of client secret + body."""
    return hashlib.sha256(secret.encode() + body).hexdigest()


def hubspot_v2(secret: str, method: str, uri: str, body: bytes) -> str:
    """v2: hex SHA-256 of client secret + method + URI + body."""
    return hashlib.sha256((secret + method + uri).encode() + body).hexdigest()


def hubspot_v3_uri(uri: str) -> str:
    """The URI as v3 signs it: these percent-escapes decoded, every other one kept."""
    escapes = {"%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$"}
    escapes |= {"%27": "'", "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";"}
    for escape, char in escapes.items():
        uri = uri.replace(escape, char)
    return uri


def hubspot_v3(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """v3: base64 HMAC-SHA256, keyed by the client secret, of method + URI + body + timestamp
    (epoch milliseconds). `uri` is used as given: see `hubspot_v3_uri`."""
    message = method.encode() + uri.encode() + body + timestamp.encode()
    return _b64(_hmac_sha256(secret.encode(), message))


def hubspot_v3_headers(
    secret: str, url: str, body: bytes, *, method: str = "POST", at: float | None = None
) -> dict[str, str]:
    """The two v3 headers for a request to `url`, signed at `at` (default: now)."""
    timestamp = str(int((time.time() if at is None else at) * 1000))
    return {
        "X-HubSpot-Signature-v3": hubspot_v3(secret, method, hubspot_v3_uri(url), body, timestamp),
        "X-HubSpot-Request-Timestamp": timestamp,
    }


def hubspot_legacy_headers(
    version: str, secret: str, url: str, body: bytes, *, method: str = "POST"
) -> dict[str, str]:
    """`X-HubSpot-Signature` (+ version) as v1 or v2 senders send it."""
    if version == "v1":
        signature = hubspot_v1(secret, body)
    elif version == "v2":
        signature = hubspot_v2(secret, method, url, body)
    else:
        raise ValueError(f"unknown HubSpot signature version {version!r} (v1 or v2)")
    return {"X-HubSpot-Signature": signature, "X-HubSpot-Signature-Version": version}


# -- Zendesk: https://developer.zendesk.com/documentation/webhooks/verifying/ -----------------


def zendesk(secret: str, timestamp: str, body: bytes) -> str:
    """base64 HMAC-SHA256 of timestamp + body; the key is the secret string as is (it looks
    like base64 but is not decoded)."""
    return _b64(_hmac_sha256(secret.encode(), timestamp.encode() + body))


def zendesk_headers(secret: str, body: bytes, *, timestamp: str | None = None) -> dict[str, str]:
    """The signature and its timestamp (default: now, ISO 8601 UTC)."""
    timestamp = timestamp or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "X-Zendesk-Webhook-Signature": zendesk(secret, timestamp, body),
        "X-Zendesk-Webhook-Signature-Timestamp": timestamp,
    }


# -- Standard Webhooks: https://github.com/standard-webhooks/standard-webhooks ----------------


def standard(secret: str, msg_id: str, timestamp: int | str, body: bytes) -> str:
    """`v1,` + base64 HMAC-SHA256, keyed by the base64-decoded `whsec_` secret, of
    `id.timestamp.body`."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    return "v1," + _b64(_hmac_sha256(key, f"{msg_id}.{timestamp}.".encode() + body))


def standard_headers(
    secret: str, body: bytes, msg_id: str, *, at: float | None = None
) -> dict[str, str]:
    """`webhook-id`, `webhook-timestamp` (epoch seconds, default now), `webhook-signature`."""
    timestamp = str(int(time.time() if at is None else at))
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": standard(secret, msg_id, timestamp, body),
    }


# -- a generic route's `hmac` (n8n, Make, curl) ------------------------------------------------


def body_hmac(secret: str, body: bytes, encoding: str = "hex") -> str:
    """HMAC-SHA256 of the raw body, `hex` or `base64`."""
    digest = _hmac_sha256(secret.encode(), body)
    if encoding == "hex":
        return digest.hex()
    if encoding == "base64":
        return _b64(digest)
    raise ValueError(f"unknown encoding {encoding!r} (hex or base64)")


# -- MeetBit's own webhooks: https://meetbit.mintlify.app/webhooks/security -------------------


def meetbit(
    secret: str, webhook_id: str, timestamp: str, body: bytes, encoding: str = "hex"
) -> str:
    """HMAC-SHA256 over `id.timestamp.body`: `hex`, `HEX` (upper case) or `base64`. The
    sandbox's signer, the one MeetBit stand-in the bridge has (tests/test_sandbox.py pins it
    to the formula)."""
    if encoding == "HEX":
        return sign_meetbit_webhook(secret, webhook_id, timestamp, body).upper()
    return sign_meetbit_webhook(secret, webhook_id, timestamp, body, encoding=encoding)


def meetbit_webhook(
    secret: str,
    event: str,
    data: dict[str, Any],
    *,
    webhook_id: str | None = None,
    timestamp: str | None = None,
    encoding: str = "hex",
) -> tuple[bytes, dict[str, str]]:
    """A MeetBit webhook as MeetBit sends it: compact JSON body and its headers."""
    body = json.dumps({"event": event, "data": data}, separators=(",", ":")).encode()
    webhook_id = webhook_id or str(uuid.uuid4())
    timestamp = timestamp or meetbit_timestamp()
    return body, {
        "Content-Type": "application/json",
        "X-Webhook-Id": webhook_id,
        "X-Webhook-Timestamp": timestamp,
        "X-Webhook-Signature": meetbit(secret, webhook_id, timestamp, body, encoding),
    }


# -- credentials and tampering -----------------------------------------------------------------


def basic_auth(user: str, password: str) -> str:
    """An `Authorization` value for HTTP Basic."""
    return "Basic " + _b64(f"{user}:{password}".encode())


def tampered(body: bytes) -> bytes:
    """The body with its first digit changed to another non-zero one (a number never gains a
    leading zero): same length, still valid JSON, XML or form, no longer what was signed."""
    position = next(i for i, c in enumerate(body) if chr(c).isdigit())
    digit = b"2" if body[position : position + 1] == b"1" else b"1"
    return body[:position] + digit + body[position + 1 :]
