"""A Standard Webhooks receiver (what Zapier, Make or n8n stand behind) for the `webhook`
write-back: `POST <base_url>` with a JSON body, verified as the spec says before it is recorded.

https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md:
`webhook-id`, `webhook-timestamp` (integer Unix seconds, within `tolerance` of now, both ways)
and `webhook-signature`: space-separated `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`
entries, keyed with the base64-decoded part of the `whsec_…` secret after the prefix; any one
entry matching is enough. Refusals are 400 (missing header, stale timestamp, not JSON) or 401
(no matching signature), `{"error": reason}`. A `webhook-id` seen before is accepted again
(receivers answer duplicates 2xx) and recorded with `"duplicate": true`. Answer: 200
`{"received": true}`; 429 with `Retry-After` when throttled.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

from flask import Request, Response

from bridge.sandbox.vendors.base import Endpoint, Received, Reply, VendorFake, json_answer

__all__ = ["WebhookReceiver", "sign_standard_webhook"]

SANDBOX_SECRET = "whsec_" + base64.b64encode(b"meetbit-bridge sandbox webhook key").decode()
TOLERANCE = 300


def sign_standard_webhook(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value (`v1,<base64>`) for `secret` (`whsec_…`)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    message = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()


class WebhookReceiver(VendorFake):
    """A Standard Webhooks endpoint; see the module docstring. `secret` is the `whsec_…`
    secret the sender signs with."""

    name = "webhook"
    endpoints = (Endpoint("/", "POST", "receive", writes=True),)

    def __init__(
        self,
        *,
        secret: str = SANDBOX_SECRET,
        tolerance: int = TOLERANCE,
        rate_limit: tuple[int, float] | None = None,
    ) -> None:
        if not secret.startswith("whsec_"):
            raise ValueError("a Standard Webhooks secret starts with whsec_")
        super().__init__(rate_limit=rate_limit)
        self.secret = secret
        self.tolerance = tolerance
        self._key = base64.b64decode(secret.removeprefix("whsec_"))

    def credentials_hint(self) -> str:
        return f"secret {self.secret}"

    def error(self, status: int, code: str, message: str, **extra: Any) -> Response:
        return json_answer(status, {"error": code, "message": message, **extra})

    def authenticate(self, req: Request) -> None:
        webhook_id = req.headers.get("webhook-id", "")
        stamp = req.headers.get("webhook-timestamp", "")
        signatures = req.headers.get("webhook-signature", "")
        for header, value in (
            ("webhook-id", webhook_id),
            ("webhook-timestamp", stamp),
            ("webhook-signature", signatures),
        ):
            if not value:
                raise self.refuse(400, "missing_header", f"{header} is required", "missing_header")
        if not stamp.isdigit():
            raise self.refuse(
                400, "bad_timestamp", "webhook-timestamp: Unix seconds", "bad_timestamp"
            )
        if abs(time.time() - int(stamp)) > self.tolerance:
            raise self.refuse(
                400, "stale_timestamp", f"webhook-timestamp is more than {self.tolerance} s "
                "from now", "stale_timestamp",
            )  # fmt: skip
        message = f"{webhook_id}.{stamp}.".encode() + req.get_data(cache=True)
        expected = base64.b64encode(hmac.new(self._key, message, hashlib.sha256).digest())
        for entry in signatures.split():
            version, _, signature = entry.partition(",")
            if version == "v1" and hmac.compare_digest(signature.encode(), expected):
                return
        raise self.refuse(
            401, "signature_mismatch", "no v1 signature matches", "signature_mismatch"
        )

    def receive(self, req: Request, received: Received) -> Reply:
        payload = self.json_body(req, received)
        webhook_id = req.headers["webhook-id"]
        duplicate = bool(self.stored(lambda r: r["webhook_id"] == webhook_id))
        record = {
            "webhook_id": webhook_id,
            "timestamp": int(req.headers["webhook-timestamp"]),
            "payload": payload,
            "duplicate": duplicate,
        }
        self.store(record)
        return Reply(200, {"received": True}, created=record, created_id=webhook_id)
