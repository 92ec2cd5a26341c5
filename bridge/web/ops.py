"""Ops endpoints: liveness, readiness."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from bridge.web import get_bridge

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> Response:
    bridge = get_bridge()
    bridge.ledger.ping()  # raises LedgerUnavailable -> 503
    return jsonify(status="ready", routes=sorted(bridge.routes))

