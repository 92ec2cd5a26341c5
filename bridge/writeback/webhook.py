"""A Standard Webhooks-signed POST of the outcome (for Zapier, Make, n8n...), `webhook-id` being
the write-back's id, so a receiver that dedups by id (as the specification asks) sees one event
however often an uncertain attempt is sent again.

https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

from bridge.writeback.base import Job, Sink, SinkConfig


class SignedWebhook(Sink):
    name = "webhook"
    credentials = ("secret_env",)
    needs_record = False
    needs_url = True
    default_rate = (10, 1.0)

    def __init__(self, config: SinkConfig) -> None:
        super().__init__(config)
        try:
            self._signer = Webhook(config.secrets["secret_env"])
        except Exception as exc:  # the package raises its own and binascii errors
            raise ValueError("secret_env: expected a whsec_... base64 secret") from exc

    def write(self, job: Job) -> str:
        body = json.dumps(
            {
                "type": "meetbit_bridge.write_back",
                "timestamp": _now_iso(),
                "data": dict(job.outcome),
            },
            separators=(",", ":"),
            ensure_ascii=False,
        )
        at = datetime.now(UTC)
        signature = self._signer.sign(job.id, at, body)
        headers = {
            "Content-Type": "application/json",
            "webhook-id": job.id,
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": signature,
        }
        assert self.config.url is not None
        self.request("POST", "", content=body.encode(), headers=headers, url=self.config.url)
        return job.id

    def find(self, job: Job) -> str | None:
        # A webhook cannot be asked what it received: it is sent again under the same id.
        return None


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
