"""A bare Flask endpoint: the baseline that the bridge's duplicate-webhook path is compared to.

It does what any JSON webhook endpoint must (read and parse the body, answer JSON) and nothing
else, so the difference is the bridge's own work (verification, mapping, ledger lookup).
"""

from __future__ import annotations

from flask import Flask, Response, jsonify, request

app = Flask(__name__)


@app.post("/hooks/<name>")
def hook(name: str) -> Response:
    payload = request.get_json(force=True)
    return jsonify(outcome="canceled", route=name, event_id=payload.get("event_id"))


@app.get("/readyz")
def ready() -> Response:
    return jsonify(status="ok")
