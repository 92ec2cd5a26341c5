"""HTTP blueprints: sender hooks, MeetBit's own webhooks, the admin API and ops endpoints."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

from flask import Request, Response, current_app, json

from bridge.delivery.answers import Answer
from bridge.delivery.service import Bridge
from bridge.sources import InboundRequest

# A sender's own answer envelope (`Source.acknowledge`): (status, body) -> (bytes, status, type).
Envelope = Callable[[int, dict[str, Any]], tuple[bytes, int, str] | None]


def get_bridge() -> Bridge:
    bridge: Bridge = current_app.extensions["bridge"]
    return bridge


def lower_headers(request: Request) -> dict[str, str]:
    """Header names lower-cased, as verifiers and templates see them."""
    return {k.lower(): v for k, v in request.headers.items()}


def sent_url(request: Request, public_url: str | None) -> str:
    """The URL with its path and query exactly as the sender wrote them, which is what it signed.

    Not `request.url`: werkzeug decodes escapes in it (%3A, %7E, %C3%A9 ...). Behind a proxy
    the origin is the configured public one, not the one we were reached at.
    """
    origin = public_url or f"{request.scheme}://{request.host}"
    # gunicorn sets RAW_URI, werkzeug's server and test client set both: the request target.
    target = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or ""
    path = urlsplit(target).path if "://" in target else target.partition("?")[0]
    if not path.startswith("/"):
        path = quote(request.script_root + request.path, safe="/:@!$&'()*+,;=~")
    query = request.query_string.decode("latin-1")
    return origin + path + (f"?{query}" if query else "")


def inbound_request(request: Request, public_url: str | None) -> InboundRequest:
    """Read the raw body once (bounded by MAX_CONTENT_LENGTH) and capture what verifiers sign."""
    body = request.get_data(cache=True)
    return InboundRequest(
        method=request.method,
        url=sent_url(request, public_url),
        headers=lower_headers(request),
        query=request.args.to_dict(),
        body=body,
        content_type=request.mimetype or "",
        received_at=time.time(),
    )


def answer_response(answer: Answer, envelope: Envelope | None = None) -> Response:
    """An Answer as the HTTP response: JSON, or the sender's envelope when it has one."""
    wrapped = envelope(answer.status, answer.body) if envelope is not None else None
    if wrapped is not None:
        body, status, content_type = wrapped
        response = Response(body, status=status, content_type=content_type)
    else:
        response = Response(json.dumps(answer.body), answer.status, mimetype="application/json")
    if answer.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response
