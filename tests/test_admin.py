"""The admin API: bearer-token guard, delivery listing and replay, operator-managed links."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from bridge.ledger import Ledger
from tests.conftest import DEFAULT_ROUTES, ZAP_TOKEN

ADMIN = {"Authorization": "Bearer adm"}
ZAP = {"X-Bridge-Token": ZAP_TOKEN}
SECRET = "whs"

# The default routes plus one that gives up after a single failed call.
ROUTES = (
    DEFAULT_ROUTES
    + """
  zap-once:
    preset: generic
    auth: {header: X-Bridge-Token, token_env: ZAP_TOKEN}
    max_attempts: 1
    target: {calendar_id: "{{ payload.calendar_id }}", event_id: "{{ payload.event_id }}"}
    note: "Canceled once"
"""
)


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app(ROUTES, BRIDGE_ADMIN_TOKEN="adm", MEETBIT_WEBHOOK_SECRET=SECRET)


def hook(client: FlaskClient, event_id: int, route: str = "zap", **extra: Any) -> TestResponse:
    return client.post(
        f"/hooks/{route}", json={"calendar_id": 12, "event_id": event_id, **extra}, headers=ZAP
    )


def admin(client: FlaskClient, method: str, path: str, **kwargs: Any) -> TestResponse:
    return client.open(path, method=method, headers=ADMIN, **kwargs)


def delivery_id(response: TestResponse) -> str:
    body = response.get_json()
    return str(body["delivery_id"])


# -- the guard --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/admin/deliveries"),
        ("GET", "/admin/deliveries/dlv_x"),
        ("POST", "/admin/deliveries/dlv_x/replay"),
        ("PUT", "/admin/links/a@b.c"),
        ("DELETE", "/admin/deliveries"),  # a wrong method too: no 405 betrays the API
        ("GET", "/admin/links"),
        ("GET", "/admin/nothing-here"),
    ],
)
def test_without_a_token_the_admin_api_is_absent(
    make_app: Callable[..., Flask], method: str, path: str
) -> None:
    client = make_app().test_client()
    response = client.open(path, method=method, headers=ADMIN)
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    assert client.open(path, method=method).get_data() == response.get_data()


@pytest.mark.parametrize(
    "authorization", [None, "Bearer", "Bearer wrong", "Basic YWRtOmFkbQ==", "adm", "Bearer adm2"]
)
def test_missing_or_wrong_credentials_are_refused(
    client: FlaskClient, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = client.get("/admin/deliveries", headers=headers)
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_the_bearer_scheme_is_case_insensitive(client: FlaskClient) -> None:
    assert (
        client.get("/admin/deliveries", headers={"Authorization": "bearer adm"}).status_code == 200
    )


# -- listing and showing ----------------------------------------------------------------------


def test_deliveries_are_listed_newest_first_page_by_page(client: FlaskClient) -> None:
    made = [delivery_id(hook(client, event_id)) for event_id in (1, 2, 3)]
    client.post("/hooks/zap-lost", json={"stage": "won"}, headers=ZAP)

    first = admin(client, "GET", "/admin/deliveries?limit=2&route=zap").get_json()
    assert [d["id"] for d in first["deliveries"]] == [made[2], made[1]]
    assert first["next_cursor"]
    second = admin(
        client, "GET", f"/admin/deliveries?limit=2&route=zap&cursor={first['next_cursor']}"
    ).get_json()
    assert [d["id"] for d in second["deliveries"]] == [made[0]]
    assert second["next_cursor"] is None

    ignored = admin(client, "GET", "/admin/deliveries?status=ignored").get_json()
    assert [(d["route"], d["outcome"]) for d in ignored["deliveries"]] == [("zap-lost", "ignored")]
    everything = admin(client, "GET", "/admin/deliveries").get_json()["deliveries"]
    assert len(everything) == 4


def test_since_filters_by_creation_time(client: FlaskClient) -> None:
    hook(client, 1)
    past = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert (
        len(admin(client, "GET", f"/admin/deliveries?since={past}").get_json()["deliveries"]) == 1
    )
    # An unencoded `+00:00` arrives as a space; it still means UTC.
    later = admin(client, "GET", "/admin/deliveries", query_string={"since": future})
    assert later.get_json()["deliveries"] == []
    raw = future.replace("+", " ")
    assert admin(client, "GET", f"/admin/deliveries?since={raw}").get_json()["deliveries"] == []


def test_since_takes_an_age_like_the_command_line(client: FlaskClient) -> None:
    hook(client, 1)
    for age in ("2h", "30m", "7d", "90s"):
        listed = admin(client, "GET", f"/admin/deliveries?since={age}")
        assert listed.status_code == 200, age
        assert len(listed.get_json()["deliveries"]) == 1, age
    # An age of nothing is now: the delivery made a moment ago is older than that.
    assert admin(client, "GET", "/admin/deliveries?since=0s").get_json()["deliveries"] == []


def listed(client: FlaskClient, query: str) -> list[tuple[str, str, str | None]]:
    response = admin(client, "GET", f"/admin/deliveries?{query}")
    assert response.status_code == 200, response.get_json()
    return [(d["route"], d["status"], d["outcome"]) for d in response.get_json()["deliveries"]]


def test_outcome_and_state_filters(client: FlaskClient, sandbox: Any) -> None:
    hook(client, 1)  # canceled
    client.post("/hooks/zap-lost", json={"stage": "won"}, headers=ZAP)  # ignored
    sandbox.state.update_config({"failure_rate": 1.0})
    hook(client, 2)  # failed transiently: the worker would retry it
    hook(client, 3, route="zap-once")  # failed for good: dead
    sandbox.state.update_config({"failure_rate": 0.0})

    assert listed(client, "outcome=canceled") == [("zap", "succeeded", "canceled")]
    assert listed(client, "outcome=ignored") == [("zap-lost", "ignored", "ignored")]
    assert listed(client, "outcome=failed") == [("zap-once", "dead", "failed")]
    assert listed(client, "state=retrying") == [("zap", "failed", None)]
    assert listed(client, "state=final") == [
        ("zap-once", "dead", "failed"),
        ("zap-lost", "ignored", "ignored"),
        ("zap", "succeeded", "canceled"),
    ]
    assert listed(client, "state=final&route=zap") == [("zap", "succeeded", "canceled")]
    assert listed(client, "state=retrying&outcome=canceled") == []


def test_the_page_size_is_capped_at_200(client: FlaskClient) -> None:
    assert admin(client, "GET", "/admin/deliveries?limit=200").status_code == 200
    assert admin(client, "GET", "/admin/links?limit=200").status_code == 200
    for path in ("/admin/deliveries?limit=201", "/admin/links?limit=201"):
        problem = admin(client, "GET", path).get_json()
        assert (problem["status"], list(problem["errors"])) == (422, ["limit"]), path
        assert problem["errors"]["limit"] == [
            "Must be greater than or equal to 1 and less than or equal to 200."
        ]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=lost", "status"),
        ("since=yesterday", "since"),
        ("cursor=not-a-cursor", "cursor"),
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=ten", "limit"),
        ("colour=red", "colour"),
        ("outcome=lost", "outcome"),
        ("state=done", "state"),
        ("since=99999999999d", "since"),
    ],
)
def test_invalid_filters_are_named(client: FlaskClient, query: str, field: str) -> None:
    response = admin(client, "GET", f"/admin/deliveries?{query}")
    assert response.status_code == 422
    problem = response.get_json()
    assert problem["type"] == "urn:meetbit-bridge:problem:invalid-query"
    assert problem["title"] == "Invalid query parameters"
    assert list(problem["errors"]) == [field]


def test_a_delivery_is_shown_with_every_field(client: FlaskClient) -> None:
    dlv = delivery_id(hook(client, 345))
    shown = admin(client, "GET", f"/admin/deliveries/{dlv}").get_json()
    assert shown["id"] == dlv
    assert (shown["route"], shown["status"], shown["outcome"]) == ("zap", "succeeded", "canceled")
    assert (shown["calendar_id"], shown["event_id"], shown["attempts"]) == (12, 345, 1)
    assert shown["event"]["cancel_note"] == "Canceled by automation"
    assert shown["final"] is True and shown["sent"] is True and shown["meetbit_status"] == 200
    for name in ("created_at", "updated_at", "expires_at"):
        assert datetime.fromisoformat(shown[name]).tzinfo is not None
    assert {"idempotency_key", "seq", "note", "next_attempt_at", "lease_until", "last_error",
            "error", "max_attempts", "url"} <= set(shown)  # fmt: skip
    missing = admin(client, "GET", "/admin/deliveries/dlv_nope")
    assert missing.status_code == 404
    assert missing.mimetype == "application/problem+json"


# -- replay -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("route", "status"), [("zap", "failed"), ("zap-once", "dead")])
def test_a_failed_or_dead_delivery_is_replayed(
    client: FlaskClient, sandbox: Any, route: str, status: str
) -> None:
    sandbox.state.update_config({"failure_rate": 1.0})
    failed = hook(client, 345, route=route)
    assert failed.status_code == 502
    dlv = failed.get_json()["delivery_id"]
    assert admin(client, "GET", f"/admin/deliveries/{dlv}").get_json()["status"] == status

    sandbox.state.update_config({"failure_rate": 0.0})
    replayed = admin(client, "POST", f"/admin/deliveries/{dlv}/replay")
    assert replayed.status_code == 200
    answer = replayed.get_json()
    assert (answer["outcome"], answer["delivery_id"]) == ("canceled", dlv)
    assert answer["event"]["id"] == 345
    assert "Idempotent-Replayed" not in replayed.headers
    assert [c["status"] for c in sandbox.calls()] == [500, 200]
    shown = admin(client, "GET", f"/admin/deliveries/{dlv}").get_json()
    assert (shown["status"], shown["outcome"], shown["attempts"]) == ("succeeded", "canceled", 1)


def test_replaying_an_event_meetbit_already_deleted_makes_no_call(
    client: FlaskClient, sandbox: Any
) -> None:
    sandbox.state.update_config({"failure_rate": 1.0})
    dlv = hook(client, 345).get_json()["delivery_id"]
    sandbox.state.update_config({"failure_rate": 0.0})
    meetbit_says_deleted(client, calendar_id=12, event_id=345)

    replayed = admin(client, "POST", f"/admin/deliveries/{dlv}/replay")
    assert replayed.status_code == 200
    assert replayed.get_json()["outcome"] == "already_canceled"
    assert len(sandbox.calls()) == 1  # only the original failed call


def test_replaying_an_event_the_bridge_canceled_makes_no_call(
    client: FlaskClient, sandbox: Any
) -> None:
    sandbox.state.update_config({"failure_rate": 1.0})
    dlv = hook(client, 345, note="first").get_json()["delivery_id"]
    sandbox.state.update_config({"failure_rate": 0.0})
    assert hook(client, 345, note="second").get_json()["outcome"] == "canceled"

    answer = admin(client, "POST", f"/admin/deliveries/{dlv}/replay").get_json()
    assert answer["outcome"] == "already_canceled"
    assert answer["event"]["cancel_note"] == "second"
    assert [c["status"] for c in sandbox.calls()] == [500, 200]


def test_successes_and_ignored_deliveries_answer_as_stored(
    client: FlaskClient, sandbox: Any
) -> None:
    first = hook(client, 345)
    dlv = delivery_id(first)
    again = admin(client, "POST", f"/admin/deliveries/{dlv}/replay")
    assert again.status_code == 200
    assert again.get_json() == first.get_json()

    ignored = client.post("/hooks/zap-lost", json={"stage": "won"}, headers=ZAP)
    answer = admin(client, "POST", f"/admin/deliveries/{delivery_id(ignored)}/replay")
    assert answer.status_code == 200
    assert answer.get_json()["outcome"] == "ignored"
    assert len(sandbox.calls()) == 1


def test_a_queued_delivery_is_not_replayed(client: FlaskClient, sandbox: Any) -> None:
    queued = client.post("/hooks/zap-ack", json={"calendar_id": 12, "event_id": 345}, headers=ZAP)
    assert queued.status_code == 202
    response = admin(client, "POST", f"/admin/deliveries/{delivery_id(queued)}/replay")
    assert response.status_code == 409
    assert response.get_json()["delivery_id"] == delivery_id(queued)
    assert int(response.headers["Retry-After"]) >= 1
    assert sandbox.calls() == []


def test_replaying_an_unknown_delivery_is_404(client: FlaskClient) -> None:
    assert admin(client, "POST", "/admin/deliveries/dlv_nope/replay").status_code == 404


def meetbit_says_deleted(client: FlaskClient, *, calendar_id: int, event_id: int) -> None:
    body = json.dumps(
        {"event": "events.deleted", "data": {"id": event_id, "calendar_id": calendar_id}}
    ).encode()
    webhook_id, timestamp = "wh-del", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    digest = hmac.new(
        SECRET.encode(), f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256
    ).digest()
    response = client.post(
        "/meetbit/webhooks",
        data=body,
        headers={
            "X-Webhook-Id": webhook_id,
            "X-Webhook-Timestamp": timestamp,
            "X-Webhook-Signature": base64.b64encode(digest).decode(),
        },
    )
    assert response.status_code == 200


# -- links ------------------------------------------------------------------------------------


def test_links_are_put_read_and_deleted(client: FlaskClient) -> None:
    created = admin(client, "PUT", "/admin/links/crm-42", json={"calendar_id": 1, "event_id": 2})
    assert created.status_code == 201
    assert created.headers["Location"] == "/admin/links/crm-42"
    same = admin(client, "PUT", "/admin/links/crm-42", json={"calendar_id": 1, "event_id": 2})
    assert same.status_code == 200
    admin(client, "PUT", "/admin/links/crm-42", json={"calendar_id": 1, "event_id": 3})

    shown = admin(client, "GET", "/admin/links/crm-42").get_json()
    assert shown["key"] == "crm-42"
    assert [(x["calendar_id"], x["event_id"]) for x in shown["links"]] == [(1, 2), (1, 3)]
    assert all(datetime.fromisoformat(x["created_at"]) for x in shown["links"])

    assert admin(client, "DELETE", "/admin/links/crm-42?event_id=2").status_code == 204
    left = admin(client, "GET", "/admin/links/crm-42").get_json()["links"]
    assert [x["event_id"] for x in left] == [3]
    assert admin(client, "DELETE", "/admin/links/crm-42?event_id=2").status_code == 404
    assert admin(client, "DELETE", "/admin/links/crm-42").status_code == 204
    assert admin(client, "GET", "/admin/links/crm-42").status_code == 404
    assert admin(client, "DELETE", "/admin/links/crm-42?event_id=x").status_code == 422


def test_email_keys_are_case_and_space_insensitive_and_feed_the_mapper(
    client: FlaskClient, sandbox: Any
) -> None:
    put = admin(
        client, "PUT", "/admin/links/%20Ada@Example.COM", json={"calendar_id": 12, "event_id": 9}
    )
    assert put.status_code == 201
    assert put.get_json()["key"] == "ada@example.com"
    assert admin(client, "GET", "/admin/links/ADA@example.com").status_code == 200

    canceled = client.post(
        "/hooks/by-email",
        json={"email": "ada@example.com"},
        headers={"Authorization": f"Bearer {ZAP_TOKEN}"},
    )
    assert canceled.get_json()["outcome"] == "canceled"
    assert [(c["calendar_id"], c["event_id"]) for c in sandbox.calls()] == [(12, 9)]


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"calendar_id": 1}, {"event_id"}),
        ({"calendar_id": 0, "event_id": 2}, {"calendar_id"}),
        ({"calendar_id": "1", "event_id": 2}, {"calendar_id"}),
        ({"calendar_id": True, "event_id": 2}, {"calendar_id"}),
        ({"calendar_id": 1, "event_id": 2**64}, {"event_id"}),
        ({"calendar_id": 1, "event_id": 2, "note": "x"}, {"note"}),
        ([1, 2], {"_schema"}),
    ],
)
def test_invalid_link_bodies_are_named(client: FlaskClient, body: Any, fields: set[str]) -> None:
    response = admin(client, "PUT", "/admin/links/k", json=body)
    assert response.status_code == 422
    assert set(response.get_json()["errors"]) == fields
    assert admin(client, "GET", "/admin/links/k").status_code == 404


def test_a_link_body_that_is_not_json_is_a_bad_request(client: FlaskClient) -> None:
    response = admin(client, "PUT", "/admin/links/k", data="calendar_id=1&event_id=2")
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"


def test_every_link_is_listed_page_by_page(client: FlaskClient) -> None:
    for key, event_id in [("crm-7", 1), ("ada@example.com", 2), ("ada@example.com", 1), ("b", 5)]:
        body = {"calendar_id": 12, "event_id": event_id}
        assert admin(client, "PUT", f"/admin/links/{key}", json=body).status_code == 201
    first = admin(client, "GET", "/admin/links?limit=3").get_json()
    rows = [(x["key"], x["calendar_id"], x["event_id"]) for x in first["links"]]
    assert rows == [("ada@example.com", 12, 1), ("ada@example.com", 12, 2), ("b", 12, 5)]
    assert all(datetime.fromisoformat(x["created_at"]).tzinfo for x in first["links"])
    rest = admin(client, "GET", f"/admin/links?cursor={first['next_cursor']}").get_json()
    assert [(x["key"], x["event_id"]) for x in rest["links"]] == [("crm-7", 1)]
    assert rest["next_cursor"] is None

    bad = admin(client, "GET", "/admin/links?cursor=bm9wZQ")
    assert bad.status_code == 422
    assert bad.get_json()["type"] == "urn:meetbit-bridge:problem:invalid-query"
    assert list(bad.get_json()["errors"]) == ["cursor"]
    assert list(admin(client, "GET", "/admin/links?key=b").get_json()["errors"]) == ["key"]


def test_an_empty_link_store_lists_nothing(client: FlaskClient) -> None:
    assert admin(client, "GET", "/admin/links").get_json() == {"links": [], "next_cursor": None}


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_every_link_operation_checks_the_key_alike(client: FlaskClient, method: str) -> None:
    body = {"calendar_id": 1, "event_id": 2} if method == "PUT" else None
    response = admin(client, method, "/admin/links/" + "k" * 321, json=body)
    assert response.status_code == 422
    problem = response.get_json()
    assert (problem["type"], problem["title"]) == (
        "urn:meetbit-bridge:problem:invalid-path",
        "Invalid path parameter",
    )
    assert problem["errors"] == {"key": ["must be 1 to 320 characters"]}


# -- the same API on PostgreSQL -----------------------------------------------------------


@pytest.mark.postgres
def test_admin_api_on_postgresql(make_app: Callable[..., Flask], pg_url: str) -> None:
    ledger = Ledger(pg_url)
    ledger.upgrade()
    ledger.dispose()
    client = make_app(ROUTES, BRIDGE_ADMIN_TOKEN="adm", DATABASE_URL=pg_url).test_client()
    made = [delivery_id(hook(client, event_id)) for event_id in (1, 2, 3)]
    first = admin(client, "GET", "/admin/deliveries?limit=2").get_json()
    rest = admin(client, "GET", f"/admin/deliveries?cursor={first['next_cursor']}").get_json()
    assert [d["id"] for d in first["deliveries"] + rest["deliveries"]] == made[::-1]
    assert admin(client, "GET", "/admin/deliveries?cursor=bm9wZQ").status_code == 422

    body = {"calendar_id": 1, "event_id": 2**63 - 1}
    assert admin(client, "PUT", "/admin/links/x@y.z", json=body).status_code == 201
    assert admin(client, "PUT", "/admin/links/" + "k" * 321, json=body).status_code == 422
    assert admin(client, "DELETE", "/admin/links/X@Y.Z").status_code == 204
