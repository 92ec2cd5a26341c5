"""A hostile client against the admin API and MeetBit's own webhook endpoint: extreme times, NUL
and unpaired surrogates, out-of-range ids, over-long keys and deep JSON are each answered with a
problem naming the culprit, the same on SQLite and PostgreSQL, and never with a 500."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from bridge.demo.signers import meetbit as signature
from bridge.demo.signers import meetbit_timestamp as stamp
from tests.test_meetbit_webhooks import SECRET, scheduled, signed

ADMIN = {"Authorization": "Bearer adm"}


@pytest.fixture
def client(make_app: Callable[..., Flask], database_url: str) -> FlaskClient:
    app = make_app(
        BRIDGE_ADMIN_TOKEN="adm", MEETBIT_WEBHOOK_SECRET=SECRET, DATABASE_URL=database_url
    )
    return app.test_client()


def admin(client: FlaskClient, method: str, path: str, **kwargs: Any) -> TestResponse:
    return client.open(path, method=method, headers=ADMIN, **kwargs)


def problem(response: TestResponse, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    assert response.mimetype == "application/problem+json"
    body: dict[str, Any] = response.get_json()
    assert body["type"] == f"urn:meetbit-bridge:problem:{slug}"
    return body


def cursor(values: list[Any]) -> str:
    """A cursor as the ledger encodes one, holding whatever a hostile client put in it."""
    raw = json.dumps(values, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# -- since ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "since",
    [
        "0001-01-01T00:00:00+14:00",  # before datetime.min once in UTC
        "9999-12-31T23:59:59-14:00",  # after datetime.max once in UTC
        "1899-12-31T23:59:59Z",
        "0001-01-01",
        "9999999999999999999999999s",
        "36501d",
    ],
)
def test_a_since_outside_the_sane_range_is_a_422_naming_since(
    client: FlaskClient, since: str
) -> None:
    body = problem(
        admin(client, "GET", "/admin/deliveries", query_string={"since": since}),
        422,
        "invalid-query",
    )
    assert list(body["errors"]) == ["since"]


@pytest.mark.parametrize("since", ["1900-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "36500d"])
def test_the_edges_of_the_range_are_accepted(client: FlaskClient, since: str) -> None:
    response = admin(client, "GET", "/admin/deliveries", query_string={"since": since})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["deliveries"] == []


# -- NUL, unpaired surrogates, over-long text ---------------------------------------------------


@pytest.mark.parametrize("key", ["%00", "a%00b@example.com", "k%00"])
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_a_link_key_with_nul_is_a_422_naming_the_key(
    client: FlaskClient, method: str, key: str
) -> None:
    response = admin(client, method, f"/admin/links/{key}", json={"calendar_id": 1, "event_id": 2})
    body = problem(response, 422, "invalid-path")
    assert list(body["errors"]) == ["key"]


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_a_link_key_longer_than_its_column_is_a_422(client: FlaskClient, method: str) -> None:
    # Lower-casing can lengthen an email (`İ` becomes two characters): checked as stored.
    for key in ["k" * 321, "\u0130" * 200 + "@example.com"]:
        response = admin(
            client, method, f"/admin/links/{key}", json={"calendar_id": 1, "event_id": 2}
        )
        assert list(problem(response, 422, "invalid-path")["errors"]) == ["key"]


def test_a_link_key_that_does_not_decode_is_stored_as_decoded(client: FlaskClient) -> None:
    # werkzeug decodes invalid UTF-8 in a path to U+FFFD: storable, and the same on both ledgers.
    put = admin(client, "PUT", "/admin/links/k%ED%A0%80", json={"calendar_id": 1, "event_id": 2})
    assert put.status_code == 201, put.get_json()
    assert put.get_json()["key"] == "k\ufffd\ufffd\ufffd"


@pytest.mark.parametrize(
    "path",
    [
        "/admin/deliveries/%00x",
        "/admin/deliveries/dlv_%00",
        "/admin/deliveries/" + "d" * 41,
        "/admin/deliveries/dlv%20x",
    ],
)
def test_a_delivery_id_that_cannot_exist_is_a_404(client: FlaskClient, path: str) -> None:
    problem(admin(client, "GET", path), 404, "not-found")
    problem(admin(client, "POST", path + "/replay"), 404, "not-found")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"route": "\x00"}, "route"),
        ({"route": "zap\x00"}, "route"),
        ({"route": "zap\r\nforged"}, "route"),
        ({"route": "r" * 201}, "route"),
        ({"outcome": "canceled\x00"}, "outcome"),
        ({"status": "\x00"}, "status"),
        ({"state": "final\x00"}, "state"),
        ({"cursor": "\x00"}, "cursor"),
        ({"cursor": "\x00" + cursor(["2026-01-01T00:00:00+00:00", "dlv_x"])}, "cursor"),
        ({"cursor": cursor(["2026-01-01T00:00:00+00:00", "dlv_\u0000"])}, "cursor"),
        ({"cursor": cursor(["2026-01-01T00:00:00+00:00", "dlv_\ud800"])}, "cursor"),
        ({"cursor": cursor(["0001-01-01T00:00:00+14:00", "dlv_x"])}, "cursor"),
        ({"cursor": cursor(["9999-12-31T23:59:59-14:00", "dlv_x"])}, "cursor"),
        ({"cursor": cursor(["2026-01-01T00:00:00\u0000", "dlv_x"])}, "cursor"),
        ({"cursor": cursor(["2026-01-01T00:00:00+00:00", "d" * 41])}, "cursor"),
    ],
)
def test_unstorable_delivery_filters_are_a_422_naming_the_filter(
    client: FlaskClient, query: dict[str, str], field: str
) -> None:
    body = problem(
        admin(client, "GET", "/admin/deliveries", query_string=query), 422, "invalid-query"
    )
    assert list(body["errors"]) == [field]


@pytest.mark.parametrize(
    "value",
    [
        "\x00",
        cursor(["k\u0000", 1, 2]),
        cursor(["k\ud800", 1, 2]),
        cursor(["k", 2**63, 2]),
        cursor(["k", 1, -(2**63) - 1]),
        cursor(["k" * 321, 1, 2]),
    ],
)
def test_an_unstorable_links_cursor_is_a_422(client: FlaskClient, value: str) -> None:
    response = admin(client, "GET", "/admin/links", query_string={"cursor": value})
    assert list(problem(response, 422, "invalid-query")["errors"]) == ["cursor"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"calendar_id": "\u0000", "event_id": 2}, "calendar_id"),
        ({"calendar_id": "\ud800", "event_id": 2}, "calendar_id"),
        ({"calendar_id": True, "event_id": 2}, "calendar_id"),
        ({"calendar_id": 1, "event_id": 2.5}, "event_id"),
        ({"calendar_id": 1, "event_id": 2.0}, "event_id"),
        ({"calendar_id": 2**63, "event_id": 2}, "calendar_id"),
        ({"calendar_id": 1, "event_id": 10**30}, "event_id"),
        ({"calendar_id": 1, "event_id": 0}, "event_id"),
        ({"calendar_id": 1, "event_id": 2, "\u0000": 1}, "\u0000"),
    ],
)
def test_a_link_body_takes_only_ids_in_range(
    client: FlaskClient, body: dict[str, Any], field: str
) -> None:
    response = admin(client, "PUT", "/admin/links/k", data=json.dumps(body))
    assert list(problem(response, 422, "invalid-body")["errors"]) == [field]


def test_the_largest_ids_are_stored(client: FlaskClient) -> None:
    body = {"calendar_id": 2**63 - 1, "event_id": 2**63 - 1}
    assert admin(client, "PUT", "/admin/links/k", json=body).status_code == 201
    links = admin(client, "GET", "/admin/links/k").get_json()["links"]
    assert [(x["calendar_id"], x["event_id"]) for x in links] == [(2**63 - 1, 2**63 - 1)]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"calendar_id": "\x00"}, "calendar_id"),
        ({"calendar_id": "1.5"}, "calendar_id"),
        ({"event_id": str(2**63)}, "event_id"),
        ({"event_id": "0"}, "event_id"),
    ],
)
def test_a_link_removal_takes_only_ids_in_range(
    client: FlaskClient, query: dict[str, str], field: str
) -> None:
    response = admin(client, "DELETE", "/admin/links/k", query_string=query)
    assert list(problem(response, 422, "invalid-query")["errors"]) == [field]


# -- nesting ------------------------------------------------------------------------------------

DEEP = b"[" * 10_000 + b"]" * 10_000
DEEP_OBJECT = b'{"a":' * 10_000 + b"1" + b"}" * 10_000


@pytest.mark.parametrize("body", [DEEP, DEEP_OBJECT])
def test_a_deeply_nested_link_body_is_a_400(client: FlaskClient, body: bytes) -> None:
    response = admin(client, "PUT", "/admin/links/k", data=body)
    assert problem(response, 400, "bad-request")["reason"] == "json_too_deep"


@pytest.mark.parametrize("body", [DEEP, DEEP_OBJECT])
def test_a_deeply_nested_signed_meetbit_webhook_is_a_400(client: FlaskClient, body: bytes) -> None:
    webhook_id, timestamp = "wh-deep", stamp()
    headers = {
        "X-Webhook-Id": webhook_id,
        "X-Webhook-Timestamp": timestamp,
        "X-Webhook-Signature": signature(SECRET, webhook_id, timestamp, body, "hex"),
    }
    response = client.post("/meetbit/webhooks", data=body, headers=headers)
    assert problem(response, 400, "bad-request")["reason"] == "json_too_deep"


# -- MeetBit's own webhooks ---------------------------------------------------------------------


def post(client: FlaskClient, body: bytes, headers: dict[str, str]) -> TestResponse:
    return client.post("/meetbit/webhooks", data=body, headers=headers)


@pytest.mark.parametrize(
    "email", ["ada\u0000@example.com", "ada@exa\u0000mple.com", "ada\ud800@example.com"]
)
def test_an_unstorable_email_in_a_booking_is_a_422(client: FlaskClient, email: str) -> None:
    body, headers = signed("meeting_links.scheduled", scheduled(email=email))
    assert list(problem(post(client, body, headers), 422, "invalid-body")["errors"]) == [
        "data.email"
    ]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({**scheduled(), "calendar_id": True}, "data.calendar_id"),
        ({**scheduled(), "event_id": False}, "data.event_id"),
        ({**scheduled(), "id": 7.5}, "data.id"),
        ({**scheduled(), "event_id": 2**63}, "data.event_id"),
        ({**scheduled(), "calendar_id": 1e19}, "data.calendar_id"),
        ({**scheduled(), "calendar_id": "\u0000"}, "data.calendar_id"),
    ],
)
def test_booking_ids_are_integers_in_range(
    client: FlaskClient, data: dict[str, Any], field: str
) -> None:
    body, headers = signed("meeting_links.scheduled", data)
    assert list(problem(post(client, body, headers), 422, "invalid-body")["errors"]) == [field]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"id": True, "calendar_id": 12}, "data.id"),
        ({"id": 345, "calendar_id": 12.5}, "data.calendar_id"),
        ({"id": 2**63, "calendar_id": 12}, "data.id"),
    ],
)
def test_deleted_event_ids_are_integers_in_range(
    client: FlaskClient, data: dict[str, Any], field: str
) -> None:
    body, headers = signed("events.deleted", data)
    assert list(problem(post(client, body, headers), 422, "invalid-body")["errors"]) == [field]


def test_an_integral_float_id_is_an_id(client: FlaskClient) -> None:
    body, headers = signed("events.deleted", {"id": 345.0, "calendar_id": 12})
    response = post(client, body, headers)
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"status": "applied"}


@pytest.mark.parametrize(
    "webhook_id", ["wh\x00nul", "w" * 201, "\x00" * 10_000, "wh-\x7f-\x1b[31m"]
)
def test_any_webhook_id_is_applied_once_never_a_500(client: FlaskClient, webhook_id: str) -> None:
    """A webhook id the column cannot hold as is is remembered by its hash: MeetBit's retry of
    it is still a duplicate, and the same on both ledgers."""
    body, headers = signed("events.deleted", {"id": 345, "calendar_id": 12}, webhook_id=webhook_id)
    first = post(client, body, headers)
    assert first.status_code == 200, first.get_data(as_text=True)[:300]
    assert first.get_json() == {"status": "applied"}
    body, headers = signed("events.deleted", {"id": 345, "calendar_id": 12}, webhook_id=webhook_id)
    assert post(client, body, headers).get_json() == {"status": "duplicate"}
    # A different long id that shares the first 200 characters is not a duplicate.
    if len(webhook_id) > 200:
        other = webhook_id + "x"
        body, headers = signed("events.deleted", {"id": 345, "calendar_id": 12}, webhook_id=other)
        assert post(client, body, headers).get_json() == {"status": "applied"}
