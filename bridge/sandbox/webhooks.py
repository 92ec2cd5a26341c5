"""MeetBit's outbound webhooks, signed and sent as MeetBit does (the sandbox's one use of requests).

Signature: HMAC-SHA256 keyed with the destination's secret over `<id>.<timestamp>.<body>`,
https://meetbit.mintlify.app/webhooks/security
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import requests

__all__ = ["meetbit_timestamp", "send_meetbit_webhook", "sign_meetbit_webhook"]

USER_AGENT = "MeetBit-Webhooks (meetbit-bridge sandbox)"


def meetbit_timestamp(moment: datetime | None = None) -> str:
    """ISO 8601 UTC with a `Z`, as in MeetBit's example `2024-08-22T01:04:05Z`."""
    moment = moment or datetime.now(UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sign_meetbit_webhook(
    secret: str, webhook_id: str, timestamp: str, body: bytes, *, encoding: str = "hex"
) -> str:
    """HMAC-SHA256 over `id.timestamp.body`; `hex` (MeetBit's example) or `base64`."""
    message = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()
    if encoding == "hex":
        return digest.hex()
    if encoding == "base64":
        return base64.b64encode(digest).decode("ascii")
    raise ValueError(f"unknown signature encoding {encoding!r} (hex or base64)")


def send_meetbit_webhook(
    url: str,
    secret: str,
    event: str,
    data: dict[str, Any],
    *,
    webhook_id: str | None = None,
    timestamp: str | None = None,
    encoding: str = "hex",
    timeout: float = 10,
) -> int:
    """POST one signed webhook like MeetBit does (compact JSON); returns the HTTP status.

    Transport failures raise `requests.RequestException`. MeetBit's own timeout is 10 s.
    """
    webhook_id = webhook_id or str(uuid.uuid4())
    timestamp = timestamp or meetbit_timestamp()
    body = json.dumps({"event": event, "data": data}, separators=(",", ":")).encode("utf-8")
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Webhook-Id": webhook_id,
        "X-Webhook-Timestamp": timestamp,
        "X-Webhook-Signature": sign_meetbit_webhook(
            secret, webhook_id, timestamp, body, encoding=encoding
        ),
    }
    with requests.Session() as session:
        response = session.post(
            url, data=body, headers=headers, timeout=timeout, allow_redirects=False
        )
        response.close()
        return response.status_code
