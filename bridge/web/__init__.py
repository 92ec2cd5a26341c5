"""HTTP blueprints: sender hooks, MeetBit's own webhooks, the admin API and ops endpoints."""

from __future__ import annotations

import time

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


def inbound_request(request: Request, public_url: str | None) -> InboundRequest:
    """Read the raw body once (bounded by MAX_CONTENT_LENGTH) and capture what verifiers sign."""
    body = request.get_data(cache=True)
    query = request.query_string.decode("latin-1")
    if public_url:
        # Behind a proxy the sender signed the public URL, not the one we were reached at.
        url = public_url + request.path + (f"?{query}" if query else "")
    else:
        url = request.url
    return InboundRequest(
        method=request.method,
        url=url,
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
