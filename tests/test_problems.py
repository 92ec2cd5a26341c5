"""The one renderer: every error, werkzeug's own and unexpected ones, is problem+json, or the
sender's own envelope on a route whose sender has one (Salesforce's SOAP)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask, request
from werkzeug.exceptions import TooManyRequests

from bridge.errors import InFlight
from bridge.web.problems import register_error_handlers
from tests.conftest import DEFAULT_ROUTES


def make() -> Flask:
    app = Flask("t")
    app.config["MAX_CONTENT_LENGTH"] = 10

    @app.post("/busy")
    def busy() -> str:
        raise InFlight("in flight", delivery_id="dlv_x", headers={"Retry-After": "2"})

    @app.post("/boom")
    def boom() -> str:
        raise RuntimeError("secret internals")

    @app.post("/read")
    def read() -> str:
        return str(len(request.get_data()))

    @app.post("/slow-down")
    def slow_down() -> str:
        raise TooManyRequests(retry_after=7)

    register_error_handlers(app)
    return app


def test_bridge_errors_carry_status_headers_and_fields() -> None:
    resp = make().test_client().post("/busy")
    assert resp.status_code == 409 and resp.headers["Retry-After"] == "2"
    assert resp.mimetype == "application/problem+json"
    assert resp.get_json() == {
        "type": "urn:meetbit-bridge:problem:in-flight",
        "title": "Delivery in flight",
        "status": 409,
        "detail": "in flight",
        "delivery_id": "dlv_x",
    }


def test_werkzeug_errors_are_problems_too() -> None:
    client = make().test_client()
    assert client.get("/nowhere").get_json()["type"].endswith(":not-found")
    wrong = client.get("/busy")
    assert wrong.status_code == 405 and wrong.headers["Allow"]
    big = client.post("/read", data=b"x" * 100)
    assert big.status_code == 413 and big.mimetype == "application/problem+json"


def test_werkzeug_405_keeps_its_allow_header() -> None:
    wrong = make().test_client().get("/busy")
    assert wrong.mimetype == "application/problem+json"
    assert {m.strip() for m in wrong.headers["Allow"].split(",")} == {"POST", "OPTIONS"}
    problem = wrong.get_json()
    assert (problem["type"], problem["status"]) == (
        "urn:meetbit-bridge:problem:method-not-allowed",
        405,
    )


def test_werkzeug_413_is_the_payload_too_large_problem() -> None:
    big = make().test_client().post("/read", data=b"x" * 100)
    problem = big.get_json()
    assert problem["type"] == "urn:meetbit-bridge:problem:payload-too-large"
    assert (problem["title"], problem["status"]) == ("Payload too large", 413)
    assert problem["detail"]


def test_a_werkzeug_status_without_a_class_of_ours_keeps_its_name_and_headers() -> None:
    resp = make().test_client().post("/slow-down")
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "7"
    assert resp.mimetype == "application/problem+json"
    problem = resp.get_json()
    assert problem["type"] == "urn:meetbit-bridge:problem:too-many-requests"
    assert (problem["title"], problem["status"]) == ("Too Many Requests", 429)


def test_a_bug_is_a_bare_500_without_traceback_or_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="bridge.web.problems"):
        resp = make().test_client().post("/boom")
    assert resp.status_code == 500
    text = resp.get_data(as_text=True)
    assert "secret internals" not in text and "Traceback" not in text
    assert resp.get_json()["type"].endswith(":internal")
    assert resp.mimetype == "application/problem+json"
    # ...while the log has the whole story.
    (record,) = [r for r in caplog.records if r.name == "bridge.web.problems"]
    assert record.exc_info is not None and "secret internals" in caplog.text
    assert "Traceback" in caplog.text


# --- a sender with its own envelope --------------------------------------------------------

SALESFORCE_ROUTES = (
    DEFAULT_ROUTES
    + """
  salesforce:
    preset: salesforce
    organization_ids: ["00D000000000062"]
    target:
      calendar_id: "{{ event.sObject.MeetBit_Calendar_Id__c }}"
      event_id: "{{ event.sObject.MeetBit_Event_Id__c }}"
    note: "{{ event.sObject.Name }} was lost"
"""
)
NOTIFICATION = b"""<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>
 <notifications xmlns="http://soap.sforce.com/2005/09/outbound">
  <OrganizationId>00D000000000062EAA</OrganizationId>
  <Notification><Id>04l000000000001AAA</Id>
   <sObject xsi:type="sf:Opportunity" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">
    <sf:StageName>Closed Lost</sf:StageName><sf:Name>ACME</sf:Name>
    <sf:MeetBit_Calendar_Id__c>12</sf:MeetBit_Calendar_Id__c>
    <sf:MeetBit_Event_Id__c>345</sf:MeetBit_Event_Id__c>
   </sObject></Notification>
 </notifications></soapenv:Body></soapenv:Envelope>"""


def soap(app: Flask, body: bytes) -> Any:
    return app.test_client().post("/hooks/salesforce", data=body, content_type="text/xml")


def assert_fault(resp: Any, status: int, code: str = "soapenv:Client") -> str:
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == "text/xml"
    text: str = resp.get_data(as_text=True)
    assert "<soapenv:Fault>" in text and f"<faultcode>{code}</faultcode>" in text
    assert "<Ack>" not in text
    return text


def test_a_salesforce_route_error_is_a_soap_fault(make_app: Callable[..., Flask]) -> None:
    app = make_app(SALESFORCE_ROUTES)
    text = assert_fault(soap(app, b"<notifications"), 400)
    assert "not well-formed XML" in text


def test_werkzeug_413_on_a_salesforce_route_is_a_soap_fault_too(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(SALESFORCE_ROUTES, BRIDGE_MAX_BODY="200")
    assert_fault(soap(app, NOTIFICATION), 413)


def test_success_and_errors_share_the_envelope(
    make_app: Callable[..., Flask], sandbox: Any
) -> None:
    app = make_app(SALESFORCE_ROUTES)
    acked = soap(app, NOTIFICATION)
    assert acked.status_code == 200 and acked.mimetype == "text/xml"
    assert "<Ack>true</Ack>" in acked.get_data(as_text=True)
    # Other routes and endpoints of the same app answer JSON.
    zap = app.test_client().post("/hooks/zap", json={}, headers={"X-Bridge-Token": "wrong"})
    assert zap.status_code == 401 and zap.mimetype == "application/problem+json"
    unknown = app.test_client().post("/hooks/nope", data=NOTIFICATION, content_type="text/xml")
    assert unknown.status_code == 404 and unknown.mimetype == "application/problem+json"
    # Routing refused the method before any view ran: no route, so no envelope.
    wrong = app.test_client().get("/hooks/salesforce")
    assert wrong.status_code == 405 and wrong.mimetype == "application/problem+json"
    assert "POST" in wrong.headers["Allow"]


def test_a_bug_on_a_salesforce_route_is_a_server_fault_without_its_message(
    make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(SALESFORCE_ROUTES)

    def broken(*_: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(app.extensions["bridge"].routes["salesforce"].source, "parse", broken)
    text = assert_fault(soap(app, NOTIFICATION), 500, code="soapenv:Server")
    assert "secret internals" not in text and "Traceback" not in text
    assert "an unexpected error occurred" in text
