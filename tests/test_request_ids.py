"""`X-Request-Id`: the client's when sane, else the bridge's own; on every response and problem
body, stored on the delivery, shown by the admin API, sent to MeetBit by the web process and by
the worker."""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from bridge.delivery.service import Bridge
from bridge.delivery.worker import Worker
from tests.conftest import ZAP_TOKEN

AUTH = {"X-Bridge-Token": ZAP_TOKEN}
ADMIN = {"Authorization": "Bearer adm"}
GENERATED = re.compile(r"[0-9a-f]{32}")


def seen_headers(sandbox: Any) -> list[dict[str, Any]]:
    response = requests.get(f"{sandbox.url}/_sandbox/headers", timeout=5)
    response.raise_for_status()
    seen: list[dict[str, Any]] = response.json()
    return seen


@pytest.mark.parametrize(
    "sent",
    ["abc-123", "A.b_c-9", "x" * 128, "f" * 32],
)
def test_a_sane_request_id_is_kept(client: FlaskClient, sent: str) -> None:
    response = client.get("/healthz", headers={"X-Request-Id": sent})
    assert response.headers["X-Request-Id"] == sent


@pytest.mark.parametrize(
    "sent",
    ["", "x" * 129, "has space", "semi;colon", "caf\u00e9", "a/b", "<script>", "a\tb"],
)
def test_anything_else_gets_a_fresh_id(client: FlaskClient, sent: str) -> None:
    response = client.get("/healthz", headers={"X-Request-Id": sent})
    assert GENERATED.fullmatch(response.headers["X-Request-Id"])


def test_crlf_in_the_request_id_is_replaced(client: FlaskClient) -> None:
    # werkzeug's client refuses CR/LF in headers; a raw environ is what a lax proxy passes on.
    response = client.get("/healthz", environ_base={"HTTP_X_REQUEST_ID": "ok\r\nSet-Cookie: x=1"})
    assert GENERATED.fullmatch(response.headers["X-Request-Id"])
    assert "Set-Cookie" not in response.headers


def test_every_answer_carries_one_and_problems_name_it(client: FlaskClient) -> None:
    ids = set()
    for method, path, kwargs in [
        ("GET", "/healthz", {}),
        ("GET", "/no-such-page", {}),
        ("POST", "/hooks/nope", {"json": {}}),
        ("GET", "/hooks/zap", {}),  # 405
        ("POST", "/hooks/zap", {"json": {"calendar_id": 1, "event_id": 2}}),  # 401
        ("POST", "/hooks/zap", {"data": "{", "headers": {**AUTH, "Content-Type": "text/plain"}}),
        ("GET", "/metrics", {}),
    ]:
        response = client.open(path, method=method, **kwargs)
        request_id = response.headers["X-Request-Id"]
        ids.add(request_id)
        if response.status_code >= 400:
            assert response.mimetype == "application/problem+json", path
            assert response.get_json()["request_id"] == request_id, path
    assert len(ids) == 7  # a fresh one per request


def test_the_webhooks_id_is_stored_shown_and_sent_to_meetbit(make_app: Any, sandbox: Any) -> None:
    app: Flask = make_app(BRIDGE_ADMIN_TOKEN="adm")
    client = app.test_client()
    sync = client.post(
        "/hooks/zap",
        json={"calendar_id": 12, "event_id": 345},
        headers={**AUTH, "X-Request-Id": "sender-req-1"},
    )
    assert sync.status_code == 200 and sync.headers["X-Request-Id"] == "sender-req-1"
    queued = client.post("/hooks/zap-ack", json={"calendar_id": 12, "event_id": 346}, headers=AUTH)
    assert queued.status_code == 202
    generated = queued.headers["X-Request-Id"]

    bridge: Bridge = app.extensions["bridge"]
    assert Worker(bridge.ledger, bridge.dispatcher).run_once() == 1
    for answer, request_id in ((sync, "sender-req-1"), (queued, generated)):
        detail = client.get(f"/admin/deliveries/{answer.get_json()['delivery_id']}", headers=ADMIN)
        assert detail.get_json()["request_id"] == request_id
        assert detail.get_json()["status"] == "succeeded"
    sent = {(h["event_id"], h["X-Request-Id"]) for h in seen_headers(sandbox)}
    # The web process's call and the worker's both carry the webhook's id.
    assert sent == {(345, "sender-req-1"), (346, generated)}
