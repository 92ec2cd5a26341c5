"""`POST /meetbit/webhooks`: MeetBit's signed webhooks store links and mark events canceled."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from bridge.demo.signers import meetbit, meetbit_timestamp, meetbit_webhook
from bridge.errors import Unauthorized
from bridge.meetbit.webhooks import verify_meetbit_webhook
from bridge.testing import wsgi_server
from tests.conftest import ZAP_TOKEN

SECRET = "whs"
ADMIN = {"Authorization": "Bearer adm"}


def signed(event: str, data: dict[str, Any], **options: Any) -> tuple[bytes, dict[str, str]]:
    """A webhook from MeetBit to this bridge (secret SECRET); options as `meetbit_webhook`."""
    return meetbit_webhook(SECRET, event, data, **options)


def post(client: FlaskClient, body: bytes, headers: dict[str, str]) -> TestResponse:
    return client.post("/meetbit/webhooks", data=body, headers=headers)


def scheduled(email: str = "ada@example.com", calendar_id: int = 12, event_id: int = 345) -> Any:
    return {"id": 77, "event_id": event_id, "calendar_id": calendar_id, "email": email}


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app(MEETBIT_WEBHOOK_SECRET=SECRET, BRIDGE_ADMIN_TOKEN="adm")


def links_of(client: FlaskClient, key: str) -> list[tuple[int, int]]:
    response = client.get(f"/admin/links/{key}", headers=ADMIN)
    if response.status_code == 404:
        return []
    return [(link["calendar_id"], link["event_id"]) for link in response.get_json()["links"]]


def test_without_a_secret_the_endpoint_is_absent(make_app: Callable[..., Flask]) -> None:
    client = make_app().test_client()
    body, headers = signed("meeting_links.scheduled", scheduled())
    response = post(client, body, headers)
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"


@pytest.mark.parametrize("encoding", ["hex", "HEX", "base64"])
def test_hex_and_base64_signatures_are_accepted(client: FlaskClient, encoding: str) -> None:
    body, headers = signed("meeting_links.scheduled", scheduled(), encoding=encoding)
    response = post(client, body, headers)
    assert response.status_code == 200
    assert response.get_json() == {"status": "applied"}
    assert links_of(client, "ada@example.com") == [(12, 345)]


def test_a_changed_byte_is_refused_and_stores_nothing(client: FlaskClient) -> None:
    body, headers = signed("meeting_links.scheduled", scheduled(event_id=345))
    tampered = body.replace(b"345", b"346")
    response = post(client, tampered, headers)
    assert response.status_code == 401
    assert response.get_json()["reason"] == "signature_mismatch"
    assert links_of(client, "ada@example.com") == []


def test_a_signature_made_with_another_secret_is_refused(client: FlaskClient) -> None:
    body, headers = signed("events.deleted", {"id": 345, "calendar_id": 12})
    headers["X-Webhook-Signature"] = meetbit(
        "other", headers["X-Webhook-Id"], headers["X-Webhook-Timestamp"], body, "hex"
    )
    assert post(client, body, headers).get_json()["reason"] == "signature_mismatch"


@pytest.mark.parametrize("offset", [-301, 301])
def test_stale_or_future_timestamps_are_refused(client: FlaskClient, offset: int) -> None:
    moment = datetime.now(UTC) + timedelta(seconds=offset)
    body, headers = signed(
        "meeting_links.scheduled", scheduled(), timestamp=meetbit_timestamp(moment)
    )
    response = post(client, body, headers)
    assert response.status_code == 401
    assert response.get_json()["reason"] == "stale_timestamp"
    assert links_of(client, "ada@example.com") == []


def test_a_timestamp_that_is_not_iso_8601_is_refused(client: FlaskClient) -> None:
    body, headers = signed("meeting_links.scheduled", scheduled(), timestamp=str(int(time.time())))
    response = post(client, body, headers)
    assert response.status_code == 401
    assert response.get_json()["reason"] == "bad_timestamp"


@pytest.mark.parametrize("header", ["X-Webhook-Id", "X-Webhook-Timestamp", "X-Webhook-Signature"])
def test_missing_headers_are_refused(client: FlaskClient, header: str) -> None:
    body, headers = signed("meeting_links.scheduled", scheduled())
    del headers[header]
    response = post(client, body, headers)
    assert response.status_code == 401
    problem = response.get_json()
    assert problem["reason"] == "missing_header"
    assert header in problem["detail"]


def test_a_duplicate_webhook_id_is_a_no_op(client: FlaskClient) -> None:
    body, headers = signed("meeting_links.scheduled", scheduled(), webhook_id="wh-1")
    assert post(client, body, headers).get_json() == {"status": "applied"}
    again = post(client, body, headers)
    assert again.status_code == 200
    assert again.get_json() == {"status": "duplicate"}
    assert links_of(client, "ada@example.com") == [(12, 345)]


def test_malformed_json_after_a_valid_signature_is_a_bad_request(client: FlaskClient) -> None:
    body = b'{"event": "meeting_links.scheduled", "data": '
    webhook_id, timestamp = "wh-2", meetbit_timestamp()
    headers = {
        "X-Webhook-Id": webhook_id,
        "X-Webhook-Timestamp": timestamp,
        "X-Webhook-Signature": meetbit(SECRET, webhook_id, timestamp, body, "hex"),
    }
    response = post(client, body, headers)
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"


def test_missing_fields_are_named(client: FlaskClient) -> None:
    body, headers = signed("meeting_links.scheduled", {"id": 77, "calendar_id": "x"})
    response = post(client, body, headers)
    assert response.status_code == 422
    errors = response.get_json()["errors"]
    assert set(errors) == {"data.event_id", "data.calendar_id", "data.email"}

    body, headers = signed("events.deleted", {"id": 1})
    response = post(client, body, headers)
    assert response.status_code == 422
    assert set(response.get_json()["errors"]) == {"data.calendar_id"}


def test_other_event_types_are_acknowledged_and_ignored(client: FlaskClient) -> None:
    body, headers = signed("events.rescheduled", {"id": 345, "calendar_id": 12})
    response = post(client, body, headers)
    assert response.status_code == 200
    assert response.get_json() == {"status": "ignored"}


def test_a_scheduled_link_lets_a_by_email_route_cancel_that_event(
    client: FlaskClient, sandbox: Any
) -> None:
    body, headers = signed("meeting_links.scheduled", scheduled(" Ada@Example.COM "))
    assert post(client, body, headers).status_code == 200

    response = client.post(
        "/hooks/by-email",
        json={"email": "ada@example.com"},
        headers={"Authorization": f"Bearer {ZAP_TOKEN}"},
    )
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    assert answer["outcome"] == "canceled"
    assert (answer["event"]["calendar_id"], answer["event"]["id"]) == (12, 345)
    assert answer["event"]["cancel_note"] == "Customer churned"
    assert [(c["calendar_id"], c["event_id"]) for c in sandbox.calls()] == [(12, 345)]


def test_an_event_deleted_in_meetbit_is_answered_already_canceled_without_a_call(
    client: FlaskClient, sandbox: Any
) -> None:
    body, headers = signed("events.deleted", {"id": 345, "calendar_id": 12})
    assert post(client, body, headers).get_json() == {"status": "applied"}

    response = client.post(
        "/hooks/zap",
        json={"calendar_id": 12, "event_id": 345},
        headers={"X-Bridge-Token": ZAP_TOKEN},
    )
    assert response.status_code == 200
    assert response.get_json()["outcome"] == "already_canceled"
    assert sandbox.calls() == []


def test_verify_returns_the_webhook_id_and_checks_the_clock_both_ways() -> None:
    # The example string of https://meetbit.mintlify.app/webhooks/security
    webhook_id, timestamp = "3f0e2f9b-8d44-4a7d-9c2a-1f5b2e7d9a6c", "2024-08-22T01:04:05Z"
    body = b'{"event":"meeting_links.scheduled","data":{"id":1234}}'
    headers = {
        "x-webhook-id": webhook_id,
        "x-webhook-timestamp": timestamp,
        "x-webhook-signature": meetbit(SECRET, webhook_id, timestamp, body, "hex"),
    }
    sent = datetime(2024, 8, 22, 1, 4, 5, tzinfo=UTC).timestamp()
    assert verify_meetbit_webhook(SECRET, headers, body, now=sent + 299) == webhook_id
    assert verify_meetbit_webhook(SECRET, headers, body, now=sent - 299) == webhook_id
    with pytest.raises(Unauthorized) as late:
        verify_meetbit_webhook(SECRET, headers, body, now=sent + 301)
    assert late.value.reason == "stale_timestamp"
    with pytest.raises(Unauthorized) as wrong:
        verify_meetbit_webhook("other", headers, body, now=sent)
    assert wrong.value.reason == "signature_mismatch"


# -- end to end over real HTTP ---------------------------------------------------------------


def test_the_sandbox_books_and_echoes_cancels_to_a_live_bridge(app: Flask, sandbox: Any) -> None:
    client = app.test_client()
    with wsgi_server(app) as bridge_url, requests.Session() as http:
        sandbox.state.update_config(
            {"notify_url": f"{bridge_url}/meetbit/webhooks", "notify_secret": SECRET}
        )
        booked = http.post(
            f"{sandbox.url}/_sandbox/schedule",
            json={"email": "Grace@Example.com", "calendar_id": 3},
            timeout=10,
        ).json()
        assert booked["notified"] == 200
        event_id = booked["event_id"]
        assert links_of(client, "grace@example.com") == [(3, event_id)]

        first = client.post(
            "/hooks/by-email",
            json={"email": "grace@example.com"},
            headers={"Authorization": f"Bearer {ZAP_TOKEN}"},
        )
        assert first.get_json()["outcome"] == "canceled"
        # MeetBit reports our own cancel back as events.deleted; it must change nothing.
        sandbox.state.join_notifiers()

    again = client.post(
        "/hooks/zap",
        json={"calendar_id": 3, "event_id": event_id},
        headers={"X-Bridge-Token": ZAP_TOKEN},
    )
    answer = again.get_json()
    assert answer["outcome"] == "already_canceled"
    assert answer["event"]["id"] == event_id  # the event from our own cancel is kept
    assert [c["status"] for c in sandbox.calls()] == [200]
