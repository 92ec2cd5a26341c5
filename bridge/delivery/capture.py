"""The webhook request as the ledger keeps it: method, path, query, headers and body as
received, with every credential redacted before anything is written.

Redacted (the value replaced by `REDACTED`, the name kept so a reader sees it was sent):
`Authorization`, `Proxy-Authorization`, `Cookie`, `Set-Cookie`; any header or query parameter
whose name holds `token`, `secret`, `signature`, `password`, `passwd`, `auth`, `session`,
`credential`, `api-key`/`apikey` or `key` (but `Idempotency-Key`, which is the sender's
delivery id, is kept); every signature header of the route's preset and the headers named in
its `auth` and `hmac` settings; and any configured secret value of the route found in a
header or query value. The body is kept as received (bounded by `BRIDGE_MAX_BODY` before it
was read), since a re-run maps it again.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode, urlsplit

from bridge.ledger import RequestRecord, new_request_id
from bridge.sources import InboundRequest, Source

REDACTED = "[redacted]"
# Header (and query parameter) names that always carry a credential.
ALWAYS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
# Names holding one of these words carry one too: tokens, secrets, signatures, keys.
_CREDENTIAL_NAME = re.compile(
    r"token|secret|signature|password|passwd|auth|session|credential|api[-_]?key|key",
    re.IGNORECASE,
)
# A name matching the pattern that is no credential, and is needed to find and re-map.
KEPT = frozenset({"idempotency-key"})
# Configured secrets shorter than this are not searched for inside other values (too likely
# to match innocent text); the headers that carry them are redacted by name all the same.
MIN_SCRUBBED = 8
# What the ledger keeps of a content type (a column bound).
MAX_CONTENT_TYPE = 200


def is_credential(name: str, route_headers: frozenset[str] = frozenset()) -> bool:
    """Whether a header or query parameter of this name is redacted."""
    lowered = name.lower()
    if lowered in KEPT:
        return False
    return (
        lowered in ALWAYS
        or lowered in route_headers
        or _CREDENTIAL_NAME.search(lowered) is not None
    )


def _scrub(value: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret in value:
            value = value.replace(secret, REDACTED)
    return value


def redact_headers(
    headers: dict[str, str] | list[tuple[str, str]], source: Source
) -> list[tuple[str, str]]:
    pairs = headers.items() if isinstance(headers, dict) else headers
    names = source.credential_headers()
    secrets = tuple(s for s in source.credential_values() if len(s) >= MIN_SCRUBBED)
    return [
        (name.lower(), REDACTED if is_credential(name, names) else _scrub(value, secrets))
        for name, value in pairs
    ]


def redact_query(query: str, source: Source) -> str:
    if not query:
        return ""
    names = source.credential_headers()
    secrets = tuple(s for s in source.credential_values() if len(s) >= MIN_SCRUBBED)
    pairs = parse_qsl(query, keep_blank_values=True)
    if not any(is_credential(k, names) for k, _ in pairs) and not any(s in query for s in secrets):
        return query  # as sent
    return urlencode(
        [(k, REDACTED if is_credential(k, names) else _scrub(v, secrets)) for k, v in pairs]
    )


def capture(route: str, source: Source, inbound: InboundRequest) -> RequestRecord:
    """The record of `inbound` for the ledger, credentials redacted; written only when the
    webhook records a new delivery."""
    parts = urlsplit(inbound.url)
    return RequestRecord(
        id=new_request_id(),
        route=route,
        received_at=datetime.fromtimestamp(inbound.received_at, UTC),
        method=inbound.method,
        path=parts.path,
        query=redact_query(parts.query, source),
        headers=redact_headers(dict(inbound.headers), source),
        content_type=inbound.content_type[:MAX_CONTENT_TYPE],
        body=inbound.body,
    )
