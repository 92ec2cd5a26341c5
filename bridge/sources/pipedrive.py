"""Pipedrive webhooks (v1 and v2): HTTP Basic credentials, one JSON event per request.

https://pipedrive.readme.io/docs/guide-for-webhooks-v2 , https://pipedrive.readme.io/docs/guide-for-webhooks
"""

from __future__ import annotations

from typing import Any

from bridge.core.limits import bounded_key
from bridge.sources.auth import check_auth, reject_unused
from bridge.sources.base import (
    InboundRequest,
    Source,
    SourceOptions,
    body_hash_key,
)

# "The deal became lost", for both shapes: v2 has `data` and a `previous` holding only the
# changed fields; v1 has `current` and a full `previous`. A lost deal edited again (status not in
# `previous`) or created lost (`previous` null) is not a transition.
DEAL_BECAME_LOST = (
    "(event.meta.entity or event.meta.object) == 'deal'"
    " and (event.data or event.current).status == 'lost'"
    " and event.previous is mapping and 'status' in event.previous"
    " and event.previous.status != 'lost'"
)


def _text(value: Any) -> str | None:
    if isinstance(value, bool) or value is None or value == "":
        return None
    return str(value) if isinstance(value, (str, int, float)) else None


class PipedriveSource(Source):
    name = "pipedrive"
    default_when = DEAL_BECAME_LOST

    def __init__(self, options: SourceOptions) -> None:
        super().__init__(options)
        reject_unused(self.name, options, auth=True)
        # Pipedrive can only send HTTP Basic credentials (http_auth_user / http_auth_password).
        if options.auth is None or not options.auth.basic:
            raise ValueError(
                f"{self.name}: auth with basic_user_env and basic_password_env is required"
            )
        self._auth = options.auth

    def verify(self, request: InboundRequest) -> None:
        check_auth(self._auth, request)

    def item_key(self, request: InboundRequest, payload: Any) -> str:
        meta = payload.get("meta")
        meta = meta if isinstance(meta, dict) else {}
        if "current" in payload and str(meta.get("version", "")) != "2.0":
            # v1 has no event id: `meta.id` is the object id, so add the event time (and webhook).
            parts = [_text(meta.get("id")), _text(meta.get("timestamp_micro"))]
            if None not in parts:
                webhook = _text(meta.get("webhook_id"))
                return bounded_key(":".join(p for p in [webhook, *parts] if p is not None))
        else:
            event_id = _text(meta.get("id"))
            if event_id is not None:
                return bounded_key(event_id)
        return body_hash_key(request.body)
