"""HTTP blueprints: sender hooks, MeetBit's own webhooks, the admin API and ops endpoints."""

from __future__ import annotations

import time
from urllib.parse import quote, urlsplit

from flask import Request, Response, current_app

from bridge.delivery.answers import Answer
from bridge.delivery.service import Bridge
from bridge.sources import InboundRequest
from bridge.web.problems import render


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


def answer_response(answer: Answer) -> Response:
    """An Answer as the HTTP response, through the same renderer as problems (JSON, or the
    sender's envelope when it has one)."""
    response = render(answer.status, answer.body)
    if answer.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response
