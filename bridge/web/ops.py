"""Ops endpoints: liveness, readiness, Prometheus metrics and the OpenAPI document; plus the one
app-wide hook that counts every answered webhook for the metrics.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request
from prometheus_client import CollectorRegistry

from bridge.delivery import metrics
from bridge.delivery.service import WORKER_STALE
from bridge.errors import LEDGER_RETRY_AFTER
from bridge.web import get_bridge
from bridge.web.openapi import build_spec

bp = Blueprint("ops", __name__)
log = logging.getLogger(__name__)

HOOK_PREFIX = "/hooks/"
MEETBIT_HOOK = "/meetbit/webhooks"
# Per-app caches in app.extensions: both are built on first use, never at import.
_REGISTRY_KEY = "bridge.metrics"
_SPEC_KEY = "bridge.openapi"


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> Response:
    bridge = get_bridge()
    # Reads, a write probe and this process's latest write; LedgerUnavailable -> 503. A
    # failed write is remembered for as long as the 503s tell senders to wait.
    bridge.ledger.ready(remember=LEDGER_RETRY_AFTER)
    return jsonify(status="ready", routes=sorted(bridge.routes))


@bp.get("/metrics")
def scrape() -> Response:
    registry: CollectorRegistry | None = current_app.extensions.get(_REGISTRY_KEY)
    if registry is None:
        registry = metrics.build_registry(get_bridge().ledger, worker_window=WORKER_STALE)
        current_app.extensions[_REGISTRY_KEY] = registry
    body, content_type = metrics.render(registry, request.headers.get("Accept"))
    return Response(body, content_type=content_type)


@bp.get("/openapi.json")
def openapi() -> Response:
    spec: dict[str, Any] | None = current_app.extensions.get(_SPEC_KEY)
    if spec is None:
        # Two first requests racing both build it; the results are identical.
        spec = current_app.extensions[_SPEC_KEY] = build_spec(get_bridge().routes)
    return jsonify(spec)


@bp.before_app_request
def _start_clock() -> None:
    g.started = time.perf_counter()


@bp.after_app_request
def count_webhooks(response: Response) -> Response:
    """Count and log every answer on /hooks/* and /meetbit/webhooks, errors included (they pass
    through here too): one line per webhook, with what became of it."""
    if request.path.startswith(HOOK_PREFIX):
        name = request.path[len(HOOK_PREFIX) :]
        # Only configured names become label values: a scanner probing random URLs must not
        # create a time series per URL.
        route = name if name in get_bridge().routes else metrics.UNKNOWN
        metrics.record_webhook(route, response.status_code, g.get("problem_reason"))
        _log_webhook(route, response.status_code)
    elif request.path == MEETBIT_HOOK:
        _log_webhook("meetbit", response.status_code)
    return response


def _log_webhook(route: str, status: int) -> None:
    started = g.get("started")
    reason = g.get("problem_reason")
    fields: dict[str, Any] = {
        "route": route,
        "status": status,
        "outcome": g.get("answer_outcome"),
        "delivery_ids": g.get("answer_deliveries") or [],
        "error_kind": metrics.label(reason) if reason else None,
        "latency_ms": round((time.perf_counter() - started) * 1000, 1) if started else None,
    }
    level = logging.INFO if status < 400 else logging.WARNING
    log.log(level, "webhook %s answered %s", route, status, extra=fields)
