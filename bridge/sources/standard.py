"""Standard Webhooks: `v1,` base64 HMAC-SHA256 of `id.timestamp.body` with a `whsec_` key.

https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import EmptyWebhookSecretError, WebhookVerificationError

from bridge.core.limits import bounded_key
from bridge.errors import Unauthorized
from bridge.sources.auth import (
    check_auth,
    check_timestamp,
    matches_any,
    parse_epoch,
    reject_unused,
    require_header,
)
from bridge.sources.base import InboundRequest, Source, SourceOptions

SECRET_PREFIX = "whsec_"


def _strict_key(secret: str) -> bytes:
    # The library pads and decodes leniently (stray characters are dropped), so a mistyped
    # secret would silently become another key; insist on clean base64 here.
    encoded = secret.removeprefix(SECRET_PREFIX)
    return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)


def _signatures(header: str) -> list[bytes]:
    """The `v1` entries of a space-separated list; other versions and malformed ones are ignored."""
    found = []
    for entry in header.split():
        version, sep, encoded = entry.partition(",")
        if version != "v1" or not sep:
            continue
        try:
            found.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            continue
    return found


class StandardWebhooksSource(Source):
    name = "standard"
    signature_headers = ("webhook-signature",)

    def __init__(self, options: SourceOptions) -> None:
        super().__init__(options)
        reject_unused(self.name, options, secrets=True, auth=True)
        if not options.secrets:
            raise ValueError(f"{self.name}: secret_env (a whsec_ signing secret) is required")
        self._webhooks: list[Webhook] = []
        for position, secret in enumerate(options.secrets, start=1):
            try:
                if not _strict_key(secret):
                    raise ValueError("empty key")
                self._webhooks.append(Webhook(secret))
            except (binascii.Error, ValueError, EmptyWebhookSecretError) as exc:
                raise ValueError(
                    f"{self.name}: secret {position} is not a base64 (whsec_) signing secret"
                ) from exc

    def verify(self, request: InboundRequest) -> None:
        msg_id = require_header(request, "webhook-id")
        raw_timestamp = require_header(request, "webhook-timestamp")
        header = require_header(request, "webhook-signature")
        timestamp = parse_epoch(raw_timestamp, header="webhook-timestamp", unit="seconds")
        # Checked here, not by Webhook.verify: it hard-codes 5 minutes around the wall clock.
        check_timestamp(
            timestamp, received_at=request.received_at, tolerance=self.options.tolerance
        )
        given = _signatures(header)
        try:
            # The library signs text, so a body that is not UTF-8 cannot carry a valid signature.
            body = request.body.decode("utf-8")
            moment = datetime.fromtimestamp(timestamp, tz=UTC)
            expected = [
                base64.b64decode(wh.sign(msg_id, moment, body).partition(",")[2])
                for wh in self._webhooks
            ]
        except (
            WebhookVerificationError,
            UnicodeDecodeError,
            binascii.Error,
            ValueError,
            OverflowError,
            OSError,
        ) as exc:
            raise Unauthorized(
                "the webhook signature does not match", reason="signature_mismatch"
            ) from exc
        if not any(matches_any(expected, signature) for signature in given):
            raise Unauthorized("the webhook signature does not match", reason="signature_mismatch")
        if self.options.auth is not None:
            check_auth(self.options.auth, request)

    def item_key(self, request: InboundRequest, payload: Any) -> str:
        return bounded_key(require_header(request, "webhook-id"))
