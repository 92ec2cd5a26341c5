"""`POST /hooks/<route>` through the Flask test client against the MeetBit sandbox."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.conftest import ZAP_TOKEN

AUTH = {"X-Bridge-Token": ZAP_TOKEN}
MISSING_EVENT = 900_001  # the sandbox has no events from 900000 on


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def post(client: FlaskClient, route: str, body: Any, **kw: Any) -> TestResponse:
    headers = {**AUTH, **kw.pop("headers", {})}
    return client.post(f"/hooks/{route}", json=body, headers=headers, **kw)


def assert_problem(resp: TestResponse, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == "application/problem+json"
    problem: dict[str, Any] = resp.get_json(force=True)
    assert problem["status"] == status
    assert problem["type"].startswith("urn:meetbit-bridge:problem:")
    assert problem["title"] and problem["detail"]
    return problem


def test_cancels_and_returns_the_event(client: FlaskClient, sandbox: Any) -> None:
    resp = post(client, "zap", {"calendar_id": 12, "event_id": 345, "note": "Deal lost"})
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["outcome"] == "canceled"
    assert body["delivery_id"].startswith("dlv_")
    assert body["event"]["id"] == 345 and body["event"]["calendar_id"] == 12
    assert body["event"]["cancel_note"] == "Deal lost"
    (item,) = body["deliveries"]
    assert item == {
        "id": body["delivery_id"],
        "status": "succeeded",
        "outcome": "canceled",
        "calendar_id": 12,
        "event_id": 345,
        "url": f"/admin/deliveries/{body['delivery_id']}",
    }
    assert "Idempotent-Replayed" not in resp.headers
    assert [(c["calendar_id"], c["event_id"]) for c in sandbox.calls()] == [(12, 345)]


def test_same_body_again_is_replayed_without_a_call(client: FlaskClient, sandbox: Any) -> None:
    first = post(client, "zap", {"calendar_id": 1, "event_id": 2})
    second = post(client, "zap", {"calendar_id": 1, "event_id": 2})
    assert second.status_code == 200
    assert second.get_json() == first.get_json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert len(sandbox.calls()) == 1


def test_idempotency_key_header_wins_over_the_body(client: FlaskClient, sandbox: Any) -> None:
    key = {"Idempotency-Key": "zap-run-77"}
    first = post(client, "zap", {"calendar_id": 1, "event_id": 3}, headers=key)
    again = post(client, "zap", {"calendar_id": 1, "event_id": 3, "retry": 1}, headers=key)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["delivery_id"] == first.get_json()["delivery_id"]
    assert len(sandbox.calls()) == 1


def test_an_event_already_canceled_is_answered_from_the_ledger(
    client: FlaskClient, sandbox: Any
) -> None:
    post(client, "zap", {"calendar_id": 4, "event_id": 40})
    other = post(client, "zap", {"calendar_id": 4, "event_id": 40, "note": "second sender"})
    assert other.status_code == 200
    body = other.get_json()
    assert body["outcome"] == "already_canceled"
    assert body["event"]["id"] == 40
    assert len(sandbox.calls()) == 1


def test_when_false_is_ignored_recorded_and_replayed(client: FlaskClient, sandbox: Any) -> None:
    resp = post(client, "zap-lost", {"stage": "won", "calendar_id": 1, "event_id": 5})
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["outcome"] == "ignored"
    assert "payload.stage == 'lost'" in body["reason"]
    assert body["deliveries"][0]["status"] == "ignored"
    again = post(client, "zap-lost", {"stage": "won", "calendar_id": 1, "event_id": 5})
    assert again.headers["Idempotent-Replayed"] == "true"
    assert sandbox.calls() == []


def test_form_encoded_bodies_map_like_json(client: FlaskClient, sandbox: Any) -> None:
    resp = client.post(
        "/hooks/zap",
        data={"calendar_id": "7", "event_id": "70", "note": "from a Zap"},
        headers=AUTH,
    )
    assert resp.status_code == 200
    assert resp.get_json()["event"]["cancel_note"] == "from a Zap"


def test_unknown_event_is_404_not_found_and_final(client: FlaskClient, sandbox: Any) -> None:
    resp = post(client, "zap", {"calendar_id": 1, "event_id": MISSING_EVENT})
    problem = assert_problem(resp, 404)
    assert problem["outcome"] == "not_found"
    assert problem["delivery_id"].startswith("dlv_")
    again = post(client, "zap", {"calendar_id": 1, "event_id": MISSING_EVENT})
    assert_problem(again, 404)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(sandbox.calls()) == 1


@pytest.mark.parametrize(
    ("body", "paths"),
    [
        ({"calendar_id": "twelve", "event_id": 1}, ["target.calendar_id"]),
        ({"calendar_id": 1}, ["target.event_id"]),
        ({"calendar_id": -3, "event_id": 1.5}, ["target.calendar_id", "target.event_id"]),
    ],
)
def test_payloads_that_do_not_map_are_422(
    client: FlaskClient, sandbox: Any, body: dict[str, Any], paths: list[str]
) -> None:
    problem = assert_problem(post(client, "zap", body), 422)
    assert sorted(problem["errors"]) == paths
    assert problem["delivery_id"].startswith("dlv_")
    assert sandbox.calls() == []


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Bridge-Token": "wrong"},
        {"X-Bridge-Token": ""},
        {"Authorization": f"Bearer {ZAP_TOKEN}"},
    ],
)
def test_bad_credentials_are_401(
    client: FlaskClient, sandbox: Any, headers: dict[str, str]
) -> None:
    resp = client.post("/hooks/zap", json={"calendar_id": 1, "event_id": 2}, headers=headers)
    assert_problem(resp, 401)
    assert sandbox.calls() == []


def test_a_rotated_token_is_accepted(make_app: Callable[..., Flask], sandbox: Any) -> None:
    client = make_app(ZAP_TOKEN_NEXT="tok-2").test_client()
    resp = client.post(
        "/hooks/zap", json={"calendar_id": 1, "event_id": 9}, headers={"X-Bridge-Token": "tok-2"}
    )
    assert resp.status_code == 200


def test_unknown_route_and_wrong_method(client: FlaskClient) -> None:
    assert_problem(post(client, "nope", {}), 404)
    resp = client.get("/hooks/zap")
    assert_problem(resp, 405)
    assert "POST" in resp.headers["Allow"]
    assert_problem(client.get("/nothing/here"), 404)


def test_bodies_that_do_not_parse_are_400_and_415(client: FlaskClient, sandbox: Any) -> None:
    bad_json = client.post(
        "/hooks/zap", data=b'{"calendar_id": ', content_type="application/json", headers=AUTH
    )
    assert_problem(bad_json, 400)
    not_utf8 = client.post(
        "/hooks/zap", data=b"\xff\xfe{}", content_type="application/json", headers=AUTH
    )
    assert_problem(not_utf8, 400)
    other = client.post("/hooks/zap", data=b"<a/>", content_type="image/png", headers=AUTH)
    assert_problem(other, 415)
    assert sandbox.calls() == []


def test_oversized_body_is_413(make_app: Callable[..., Flask], sandbox: Any) -> None:
    client = make_app(BRIDGE_MAX_BODY="200").test_client()
    resp = post(client, "zap", {"calendar_id": 1, "event_id": 2, "pad": "x" * 300})
    assert_problem(resp, 413)
    assert sandbox.calls() == []


def test_dry_run_maps_but_calls_and_writes_nothing(app: Flask, sandbox: Any) -> None:
    client = app.test_client()
    resp = post(client, "zap", {"calendar_id": 5, "event_id": 50}, query_string={"dry_run": "1"})
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["outcome"] == "dry_run"
    assert body["deliveries"][0] == {
        "idempotency_key": body["deliveries"][0]["idempotency_key"],
        "outcome": "would_cancel",
        "calendar_id": 5,
        "event_id": 50,
        "note": "Canceled by automation",
    }
    assert sandbox.calls() == []
    assert app.extensions["bridge"].ledger.queries.deliveries()[0] == []
    # ...and the real request afterwards is not mistaken for a duplicate.
    assert (
        post(client, "zap", {"calendar_id": 5, "event_id": 50}).get_json()["outcome"] == "canceled"
    )


def test_meetbit_failure_without_a_worker_is_502_and_the_retry_attempts_again(
    client: FlaskClient, sandbox: Any
) -> None:
    sandbox.config.failure_rate = 1.0
    problem = assert_problem(post(client, "zap", {"calendar_id": 2, "event_id": 20}), 502)
    assert problem["reason"] == "server_error"
    assert problem["outcome"] == "failed"
    sandbox.config.failure_rate = 0.0
    retry = post(client, "zap", {"calendar_id": 2, "event_id": 20})
    assert retry.status_code == 200
    assert retry.get_json()["outcome"] == "canceled"
    assert "Idempotent-Replayed" not in retry.headers
    assert [c["status"] for c in sandbox.calls()] == [500, 200]


@pytest.mark.parametrize(
    ("key_id", "secret", "reason"),
    [
        ("MBP-sandbox", "wrong-secret", "bad_credentials"),
        ("MBP-denied", "denied-secret", "permission_denied"),
    ],
)
def test_meetbit_rejecting_our_keys_is_502(
    make_app: Callable[..., Flask], sandbox: Any, key_id: str, secret: str, reason: str
) -> None:
    client = make_app(MEETBIT_ACCESS_KEY_ID=key_id, MEETBIT_ACCESS_KEY_SECRET=secret).test_client()
    problem = assert_problem(post(client, "zap", {"calendar_id": 1, "event_id": 2}), 502)
    assert problem["reason"] == reason
    assert secret not in json.dumps(problem)


def test_meetbit_unreachable_is_502(make_app: Callable[..., Flask]) -> None:
    client = make_app(MEETBIT_BASE_URL="http://127.0.0.1:9").test_client()
    problem = assert_problem(post(client, "zap", {"calendar_id": 1, "event_id": 2}), 502)
    assert problem["reason"] == "connection_error"


def test_ack_route_answers_202_and_leaves_the_call_to_the_worker(
    client: FlaskClient, sandbox: Any
) -> None:
    resp = post(client, "zap-ack", {"calendar_id": 3, "event_id": 30})
    assert resp.status_code == 202
    body = resp.get_json()
    assert body["outcome"] == "queued"
    assert body["deliveries"][0]["status"] == "pending"
    assert body["deliveries"][0]["url"] == f"/admin/deliveries/{body['delivery_id']}"
    assert sandbox.calls() == []


def test_sync_deadline_passed_without_worker(make_app: Callable[..., Flask], sandbox: Any) -> None:
    """MeetBit slower than the deadline: the call is cut; a retry finds it done, not failed."""
    client = make_app(BRIDGE_SYNC_DEADLINE="0.5").test_client()
    sandbox.config.latency = 1.0
    problem = assert_problem(post(client, "zap", {"calendar_id": 6, "event_id": 60}), 502)
    assert problem["reason"] == "timeout"
    wait_for(lambda: sandbox.calls()[0]["status"] == 200)  # the late cancel completes
    sandbox.config.latency = 0.0
    retry = post(client, "zap", {"calendar_id": 6, "event_id": 60})
    # The first call did cancel it at MeetBit (the sandbox answered late); the retry's 404 is
    # recognised as our own earlier cancel, never reported as a failure.
    assert retry.status_code == 200
    assert retry.get_json()["outcome"] == "already_canceled"


HOSTILE = [
    (b"", "application/json"),
    (b"null", "application/json"),
    (b"[]", "application/json"),
    (b"[1, 2]", "application/json"),
    (b'"str"', "application/json"),
    (b"1e999999", "application/json"),
    (b'{"calendar_id": {"__class__": 1}, "event_id": [1]}', "application/json"),
    (b"[" * 5000 + b"]" * 5000, "application/json"),
    (b"calendar_id=1&calendar_id=2&event_id=%ff", "application/x-www-form-urlencoded"),
    (b"\x00\x01\x02", "application/x-www-form-urlencoded"),
    (b"{}", "text/plain"),
    (b"{}", ""),
]


@pytest.mark.parametrize(("body", "ctype"), HOSTILE)
def test_hostile_bodies_never_500(client: FlaskClient, body: bytes, ctype: str) -> None:
    resp = client.post("/hooks/zap", data=body, content_type=ctype or None, headers=AUTH)
    assert 400 <= resp.status_code < 500, resp.get_data(as_text=True)
    assert resp.mimetype == "application/problem+json"
    assert "Traceback" not in resp.get_data(as_text=True)
