"""The naive proxy the cancel path is measured against: Flask, then `requests` to MeetBit, with
no verification, ledger, rate limit or retry (what a hand-written glue endpoint does).

Run by `bench_scale.py` under the same gunicorn settings as the bridge; reads NAIVE_UPSTREAM,
NAIVE_KEY_ID and NAIVE_KEY_SECRET from the environment.
"""

from __future__ import annotations

import os
import threading

import requests
from flask import Flask, Response, jsonify, request

app = Flask(__name__)
_local = threading.local()


def _session() -> requests.Session:
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
        session.headers.update(
            {
                "X-Access-Key-Id": os.environ["NAIVE_KEY_ID"],
                "X-Access-Key-Secret": os.environ["NAIVE_KEY_SECRET"],
            }
        )
    return session


@app.post("/hooks/<name>")
def hook(name: str) -> tuple[Response, int]:
    payload = request.get_json(force=True)
    url = (
        f"{os.environ['NAIVE_UPSTREAM']}/api/public/v2.0/calendars/{int(payload['calendar_id'])}"
        f"/events/{int(payload['event_id'])}/cancel"
    )
    answer = _session().post(url, json={"cancel_note": "Canceled by automation"}, timeout=10)
    if answer.status_code != 200:
        return jsonify(outcome="failed", status=answer.status_code), 502
    return jsonify(outcome="canceled", event=answer.json()["data"]), 200


@app.get("/readyz")
def ready() -> Response:
    return jsonify(status="ok")
