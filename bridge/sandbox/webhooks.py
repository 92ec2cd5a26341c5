"""MeetBit's outbound webhooks, signed and sent as MeetBit does (the sandbox's one use of requests).

Signature: HMAC-SHA256 keyed with the destination's secret over `<id>.<timestamp>.<body>`,
https://meetbit.mintlify.app/webhooks/security
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import requests

__all__ = ["Notifier", "meetbit_timestamp", "send_meetbit_webhook", "sign_meetbit_webhook"]

log = logging.getLogger(__name__)

USER_AGENT = "MeetBit-Webhooks (meetbit-bridge sandbox)"
# MeetBit's own timeout for a webhook delivery.
NOTIFY_TIMEOUT = 10.0


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


class Notifier:
    """Sends MeetBit's webhooks after the fact, each in a thread of its own, as MeetBit does;
    the vendor fakes run their write triggers through it too (`run_later`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: set[threading.Thread] = set()

    def send_later(self, url: str, secret: str, event: str, data: dict[str, Any]) -> None:
        def send() -> None:
            status = send_meetbit_webhook(url, secret, event, data, timeout=NOTIFY_TIMEOUT)
            log.info("sandbox sent %s to %s: %s", event, url, status)

        self.run_later(send, f"{event} to {url}")

    def run_later(self, work: Callable[[], object], what: str) -> None:
        """Run `work` in a background thread of its own; a failure is logged, never raised."""
        thread = threading.Thread(
            target=self._run_quietly, args=(work, what), daemon=True, name=f"sandbox-{what}"
        )
        with self._lock:
            self._pending.add(thread)
        thread.start()

    def _run_quietly(self, work: Callable[[], object], what: str) -> None:
        try:
            work()
        except Exception as exc:  # a background sender must never die loudly
            log.warning("sandbox could not send %s: %s", what, type(exc).__name__)
        finally:
            with self._lock:
                self._pending.discard(threading.current_thread())

    def join(self, timeout: float = 5.0) -> None:
        """Wait (bounded) for webhooks still being sent."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                pending = list(self._pending)
            if not pending:
                return
            for thread in pending:
                thread.join(max(0.0, deadline - time.monotonic()))
            if time.monotonic() >= deadline:
                return
