"""Every preset end to end: a realistic, correctly signed webhook -> a canceled MeetBit event.

The one in-process preset matrix: the demo's requests (bridge/demo/samples.py) with the answer
and final outcome each must get, then each preset's cases in depth. Requests go through the Flask
test client to the MeetBit sandbox on a real port; signatures come from bridge/demo/signers.py,
written from each vendor's documented formula, independently of the bridge's own code. The demo
itself runs once under gunicorn in test_demo.py.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from bridge.delivery.worker import Worker
from bridge.demo import payload, signers
from bridge.demo.credentials import ADMIN_TOKEN as DEMO_ADMIN_TOKEN
from bridge.demo.samples import NOTHING, Sample, demo_samples

ADMIN_TOKEN = "e2e-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
STANDARD_KEY = b"e2e-standard-webhooks-signing-key"
ENV = {
    "HUBSPOT_CLIENT_SECRET": "5b8f0c1e-2d3a-4f6b-8c9d-0e1f2a3b4c5d",
    "PIPEDRIVE_USER": "pipedrive",
    "PIPEDRIVE_PASSWORD": "pd-secret-pass",
    "ZENDESK_SIGNING_SECRET": "dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ==",
    "FRESHDESK_TOKEN": "fd-token-123",
    "STANDARD_WEBHOOK_SECRET": "whsec_"
    + base64.b64encode(b"e2e-standard-webhooks-signing-key").decode(),
    "ZAP_FORM_TOKEN": "zap-form-token",
    "N8N_SECRET": "n8n-hmac-secret",
    "BRIDGE_ADMIN_TOKEN": ADMIN_TOKEN,
}
ORG_ID = "00D000000000062EAA"

ROUTES = """
routes:
  hubspot-deals:
    preset: hubspot
    secret_env: HUBSPOT_CLIENT_SECRET
    target: {link: "hubspot-deal:{{ event.objectId }}"}
    note: "Deal {{ event.objectId }} was lost"
  hubspot-deals-sync:
    preset: hubspot
    secret_env: HUBSPOT_CLIENT_SECRET
    respond: sync
    target: {link: "hubspot-deal:{{ event.objectId }}"}
    note: "Deal {{ event.objectId }} was lost"
  hubspot-deal-lost:
    preset: hubspot-workflow
    secret_env: HUBSPOT_CLIENT_SECRET
    when: "payload.properties.dealstage.value == 'closedlost'"
    target:
      calendar_id: "{{ payload.properties.meetbit_calendar_id.value }}"
      event_id: "{{ payload.properties.meetbit_event_id.value }}"
    note: "Deal {{ payload.properties.dealname.value }} was lost"
    respond: sync
  pipedrive-deals:
    preset: pipedrive
    auth: {basic_user_env: PIPEDRIVE_USER, basic_password_env: PIPEDRIVE_PASSWORD}
    target: {link: "pipedrive-deal:{{ (event.data or event.current).id }}"}
    note: "Deal {{ (event.data or event.current).title }} was lost"
  salesforce-opportunities:
    preset: salesforce
    organization_ids: ["00D000000000062"]
    target:
      calendar_id: "{{ event.sObject.MeetBit_Calendar_Id__c }}"
      event_id: "{{ event.sObject.MeetBit_Event_Id__c }}"
    note: "{{ event.sObject.Name }} was lost"
  zendesk-tickets:
    preset: zendesk
    secret_env: ZENDESK_SIGNING_SECRET
    target: {link: "zendesk-ticket:{{ payload.detail.id }}"}
    note: "Ticket {{ payload.detail.id }} solved: {{ payload.detail.subject }}"
  freshdesk-json:
    preset: freshdesk
    auth: {bearer_env: FRESHDESK_TOKEN}
    when: "payload.freshdesk_webhook.ticket_status == 'Resolved'"
    target: {customer_email: "{{ payload.freshdesk_webhook.ticket_contact_email }}"}
    note: "{{ payload.freshdesk_webhook.ticket_subject }}"
  freshdesk-form:
    preset: freshdesk
    auth: {header: X-Freshdesk-Token, token_env: FRESHDESK_TOKEN}
    when: "payload.ticket_status == 'Resolved'"
    target: {customer_email: "{{ payload.requester_email }}"}
    note: "{{ payload.subject }}"
  standard-webhooks:
    preset: standard
    secret_env: STANDARD_WEBHOOK_SECRET
    when: "payload.type == 'deal.lost'"
    target: {calendar_id: "{{ payload.data.calendar_id }}", event_id: "{{ payload.data.event_id }}"}
    note: "{{ payload.data.reason }}"
  zapier-form:
    preset: generic
    auth: {header: X-Bridge-Token, token_env: ZAP_FORM_TOKEN}
    target: {calendar_id: "{{ payload.calendar_id }}", event_id: "{{ payload.event_id }}"}
    note: "{{ payload.note }}"
  n8n:
    preset: generic
    hmac: {header: X-Signature, secret_env: N8N_SECRET, prefix: "sha256="}
    target: {calendar_id: "{{ payload.calendar_id }}", event_id: "{{ payload.event_id }}"}
    note: "{{ payload.note }}"
"""


# --- signed as each vendor signs (bridge/demo/signers.py), with this module's secrets ----------


def hubspot_v3(body: bytes, url: str, secret: str = ENV["HUBSPOT_CLIENT_SECRET"]) -> dict[str, str]:
    return signers.hubspot_v3_headers(secret, url, body)


def hubspot_legacy(version: str, body: bytes, url: str) -> dict[str, str]:
    return signers.hubspot_legacy_headers(version, ENV["HUBSPOT_CLIENT_SECRET"], url, body)


def zendesk(body: bytes) -> dict[str, str]:
    return {
        **signers.zendesk_headers(ENV["ZENDESK_SIGNING_SECRET"], body),
        "X-Zendesk-Webhook-Invocation-Id": "8350205582",
        "X-Zendesk-Account-Id": "12514403",
    }


def standard(body: bytes, msg_id: str = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W") -> dict[str, str]:
    return signers.standard_headers(ENV["STANDARD_WEBHOOK_SECRET"], body, msg_id)


def body_hmac(body: bytes) -> dict[str, str]:
    return {"X-Signature": "sha256=" + signers.body_hmac(ENV["N8N_SECRET"], body)}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": signers.basic_auth(user, password)}


# --- helpers ----------------------------------------------------------------------------------


def hook_url(route: str, origin: str = "http://localhost") -> str:
    return f"{origin}/hooks/{route}"


def send(
    client: FlaskClient,
    route: str,
    body: bytes,
    headers: dict[str, str],
    content_type: str = "application/json",
) -> TestResponse:
    return client.post(
        f"/hooks/{route}", data=body, headers={"Content-Type": content_type, **headers}
    )


def link(client: FlaskClient, key: str, calendar_id: int, event_id: int) -> None:
    resp = client.put(
        f"/admin/links/{key}",
        json={"calendar_id": calendar_id, "event_id": event_id},
        headers=ADMIN,
    )
    assert resp.status_code in (200, 201), resp.get_data(as_text=True)


def run_worker(app: Flask) -> int:
    bridge = app.extensions["bridge"]
    return Worker(bridge.ledger, bridge.dispatcher).run_once()


def delivery(
    client: FlaskClient, delivery_id: str, admin: dict[str, str] = ADMIN
) -> dict[str, Any]:
    resp = client.get(f"/admin/deliveries/{delivery_id}", headers=admin)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    found: dict[str, Any] = resp.get_json()
    return found


def cancels(sandbox: Any) -> list[tuple[int, int, int]]:
    return [(c["calendar_id"], c["event_id"], c["status"]) for c in sandbox.calls()]


def canceled_event(resp: TestResponse, calendar_id: int, event_id: int) -> dict[str, Any]:
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body: dict[str, Any] = resp.get_json()
    assert body["outcome"] == "canceled"
    event: dict[str, Any] = body["event"]
    assert (event["calendar_id"], event["id"]) == (calendar_id, event_id)
    assert event["deleted_at"]
    return event


def hubspot_event(
    event_id: int, deal: int, prop: str = "dealstage", value: str = "closedlost"
) -> dict[str, Any]:
    return {
        "eventId": event_id,
        "subscriptionId": 2345678,
        "portalId": 62515,
        "occurredAt": 1717000000000,
        "subscriptionType": "deal.propertyChange",
        "attemptNumber": 0,
        "objectId": deal,
        "propertyName": prop,
        "propertyValue": value,
        "changeSource": "CRM_UI",
    }


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app(ROUTES, **ENV)


# --- the demo's requests: every preset, the answer and the final outcome ------------------------


def demo_outcome(resp: TestResponse) -> str:
    """What the demo table shows for an answer (bridge/demo/runner.py `_outcome`)."""
    replayed = " replayed" if resp.headers.get("Idempotent-Replayed") == "true" else ""
    if "xml" in resp.headers.get("Content-Type", ""):
        acked = "<Ack>true</Ack>" in resp.get_data(as_text=True)
        return f"{resp.status_code} {'ack' if acked else 'fault'}{replayed}"
    body: dict[str, Any] = resp.get_json(force=True)
    word = body.get("outcome") or body.get("reason") or ""
    return f"{resp.status_code} {word}{replayed}"


def demo_routes(samples: list[Sample]) -> tuple[str, dict[str, str]]:
    """The demo's route file and the secrets it reads."""
    routes: dict[str, Any] = {}
    env: dict[str, str] = {}
    for sample in samples:
        routes[sample.route] = sample.route_config
        env.update(sample.env)
    return yaml.safe_dump({"routes": routes}, sort_keys=False), env


def delivery_ids(client: FlaskClient, resp: TestResponse, route: str, seen: set[str]) -> list[str]:
    """The request's deliveries: from a JSON answer, or (SOAP) the route's not yet seen."""
    if resp.is_json:
        return [d["id"] for d in resp.get_json().get("deliveries", [])]
    listed = client.get(f"/admin/deliveries?route={route}&limit=200", headers=DEMO_ADMIN)
    return [d["id"] for d in listed.get_json()["deliveries"] if d["id"] not in seen]


DEMO_ADMIN = {"Authorization": f"Bearer {DEMO_ADMIN_TOKEN}"}


def test_every_demo_request_gets_its_answer_and_final_outcome(
    make_app: Callable[..., Flask], sandbox: Any
) -> None:
    """The matrix `meetbit-bridge demo` runs under gunicorn (test_demo.py), in process."""
    samples = demo_samples()
    routes, env = demo_routes(samples)
    app = make_app(routes, **env, BRIDGE_ADMIN_TOKEN=DEMO_ADMIN_TOKEN)
    client = app.test_client()
    got, want, rows = [], [], []
    seen: set[str] = set()
    for sample in samples:
        for call in sample.calls:
            for method, path, body in call.before:
                setup = client.open(path, method=method, json=body, headers=DEMO_ADMIN)
                assert setup.status_code in (200, 201), setup.get_data(as_text=True)
            raw, headers = call.build(f"http://localhost/hooks/{sample.route}")
            resp = client.post(f"/hooks/{sample.route}", data=raw, headers=headers)
            ids = delivery_ids(client, resp, sample.route, seen)
            seen.update(ids)
            got.append((sample.route, call.label, demo_outcome(resp)))
            want.append((sample.route, call.label, call.expect))
            rows.append((sample.route, call.label, call.final, ids))
    assert got == want
    # Synchronous rows reached MeetBit once each (no call for replays, rejections or queues).
    synchronous = [c for *_, c in want if c == "200 canceled"]
    assert len([c for c in sandbox.calls() if c["status"] == 200]) == len(synchronous)

    while run_worker(app):  # the queued ones (202, Salesforce's ack)
        pass
    canceled_deliveries = set()
    for route, label, final, ids in rows:
        ends = []
        for delivery_id in ids:
            stored = delivery(client, delivery_id, DEMO_ADMIN)
            assert stored["final"], (route, label, stored)
            ends.append(stored["outcome"])
            if stored["outcome"] == "canceled":
                canceled_deliveries.add(delivery_id)
        assert (", ".join(sorted(ends)) or NOTHING) == final, (route, label)
    # Each canceled delivery is one MeetBit cancel of an event of its own.
    canceled = [(c["calendar_id"], c["event_id"]) for c in sandbox.calls() if c["status"] == 200]
    assert len(canceled) == len(set(canceled)) == len(canceled_deliveries)


# --- HubSpot app webhooks ---------------------------------------------------------------------


def test_hubspot_batch_is_acked_then_the_worker_cancels_the_lost_deal(
    app: Flask, client: FlaskClient, sandbox: Any
) -> None:
    link(client, "hubspot-deal:9876543210", 12, 345)
    body = payload("hubspot", "deal_batch.json")
    resp = send(client, "hubspot-deals", body, hubspot_v3(body, hook_url("hubspot-deals")))
    assert resp.status_code == 202
    answer = resp.get_json()
    assert answer["outcome"] == "queued"
    # Four events, one of them twice: three deliveries, only the lost deal waits for MeetBit.
    assert sorted(d["outcome"] for d in answer["deliveries"]) == ["ignored", "ignored", "queued"]
    assert sandbox.calls() == []

    assert run_worker(app) == 1
    assert cancels(sandbox) == [(12, 345, 200)]
    (queued,) = [d for d in answer["deliveries"] if d["outcome"] == "queued"]
    stored = delivery(client, queued["id"])
    assert (stored["status"], stored["outcome"]) == ("succeeded", "canceled")
    assert stored["note"] == "Deal 9876543210 was lost"


def test_hubspot_mixed_batch_calls_once_per_lost_deal_and_a_resend_is_replayed(
    app: Flask, client: FlaskClient, sandbox: Any
) -> None:
    link(client, "hubspot-deal:101", 1, 11)
    link(client, "hubspot-deal:102", 1, 12)
    batch = [
        hubspot_event(1, 101),
        hubspot_event(2, 102),
        hubspot_event(3, 103, value="contractsent"),
        hubspot_event(4, 104, prop="amount"),
        hubspot_event(1, 101),  # the same event twice in one batch
    ]
    body = json.dumps(batch).encode()
    url = hook_url("hubspot-deals")
    assert send(client, "hubspot-deals", body, hubspot_v3(body, url)).status_code == 202
    run_worker(app)
    assert sorted(cancels(sandbox)) == [(1, 11, 200), (1, 12, 200)]

    # HubSpot's retry of the same webhook (attemptNumber bumped, freshly signed): no call.
    retry = json.dumps([{**event, "attemptNumber": 1} for event in batch]).encode()
    again = send(client, "hubspot-deals", retry, hubspot_v3(retry, url))
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["outcome"] == "canceled"
    assert run_worker(app) == 0
    assert len(sandbox.calls()) == 2


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_hubspot_legacy_signatures_are_accepted(
    app: Flask, client: FlaskClient, sandbox: Any, version: str
) -> None:
    link(client, "hubspot-deal:9876543210", 12, 345)
    body = payload("hubspot", "deal_batch.json")
    headers = hubspot_legacy(version, body, hook_url("hubspot-deals-sync"))
    resp = send(client, "hubspot-deals-sync", body, headers)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json()["outcome"] == "canceled"
    assert cancels(sandbox) == [(12, 345, 200)]


def test_hubspot_never_gets_a_do_not_retry_status_when_meetbit_fails(
    app: Flask, client: FlaskClient, sandbox: Any
) -> None:
    link(client, "hubspot-deal:9876543210", 12, 345)
    body = payload("hubspot", "deal_batch.json")
    sandbox.config.failure_rate = 1.0
    sync = send(
        client, "hubspot-deals-sync", body, hubspot_v3(body, hook_url("hubspot-deals-sync"))
    )
    assert sync.status_code == 502
    assert sync.mimetype == "application/problem+json"
    acked = send(client, "hubspot-deals", body, hubspot_v3(body, hook_url("hubspot-deals")))
    assert acked.status_code == 202
    run_worker(app)
    # Both routes' deliveries reached MeetBit and failed; a retry whose random backoff was
    # already due may have been made by the worker too.
    statuses = [status for *_, status in cancels(sandbox)]
    assert len(statuses) >= 2 and set(statuses) == {500}

    # MeetBit recovers: HubSpot's retry of the synchronous route cancels the event.
    sandbox.config.failure_rate = 0.0
    retry = send(
        client, "hubspot-deals-sync", body, hubspot_v3(body, hook_url("hubspot-deals-sync"))
    )
    assert retry.status_code in (200, 202), retry.get_data(as_text=True)
    assert cancels(sandbox)[-1] == (12, 345, 200)


def test_hubspot_gets_503_when_the_ledger_is_unavailable(
    make_app: Callable[..., Flask], sandbox: Any
) -> None:
    down = "postgresql://postgres@127.0.0.1:1/bridge?connect_timeout=2"
    client = make_app(ROUTES, **ENV, DATABASE_URL=down).test_client()
    body = payload("hubspot", "deal_batch.json")
    resp = send(client, "hubspot-deals", body, hubspot_v3(body, hook_url("hubspot-deals")))
    assert resp.status_code == 503
    assert resp.mimetype == "application/problem+json"
    assert int(resp.headers["Retry-After"]) > 0
    assert sandbox.calls() == []


def test_public_url_lets_hubspot_v3_verify_behind_a_proxy(
    make_app: Callable[..., Flask], sandbox: Any
) -> None:
    public = "https://bridge.example.com/hooks/hubspot-deals?portal=62515"
    body = payload("hubspot", "deal_batch.json")
    proxied = make_app(ROUTES, **ENV, BRIDGE_PUBLIC_URL="https://bridge.example.com")
    link(proxied.test_client(), "hubspot-deal:9876543210", 12, 345)
    resp = send(proxied.test_client(), "hubspot-deals?portal=62515", body, hubspot_v3(body, public))
    assert resp.status_code == 202, resp.get_data(as_text=True)

    direct = make_app(ROUTES, **ENV).test_client()
    refused = send(direct, "hubspot-deals?portal=62515", body, hubspot_v3(body, public))
    assert refused.status_code == 401
    assert refused.get_json()["reason"] == "signature_mismatch"


# --- HubSpot workflows ------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["v3", "v1", "v2"])
def test_hubspot_workflow_legacy_properties_body_cancels(
    client: FlaskClient, sandbox: Any, version: str
) -> None:
    body = payload("hubspot-workflow", "legacy.json")
    url = hook_url("hubspot-deal-lost")
    headers = hubspot_v3(body, url) if version == "v3" else hubspot_legacy(version, body, url)
    event = canceled_event(send(client, "hubspot-deal-lost", body, headers), 12, 345)
    assert event["cancel_note"] == "Deal ACME renewal was lost"
    assert cancels(sandbox) == [(12, 345, 200)]


# --- Pipedrive --------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["v2_deal_lost.json", "v1_deal_lost.json"])
def test_pipedrive_deal_lost_cancels_the_linked_meeting(
    client: FlaskClient, sandbox: Any, fixture: str
) -> None:
    link(client, "pipedrive-deal:42", 12, 345)
    auth = basic(ENV["PIPEDRIVE_USER"], ENV["PIPEDRIVE_PASSWORD"])
    body = payload("pipedrive", fixture)
    event = canceled_event(send(client, "pipedrive-deals", body, auth), 12, 345)
    assert event["cancel_note"] == "Deal ACME renewal was lost"
    # Pipedrive's retry of the same event: answered from the ledger.
    again = send(client, "pipedrive-deals", body, auth)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert cancels(sandbox) == [(12, 345, 200)]


def test_pipedrive_edit_of_an_already_lost_deal_is_ignored(
    client: FlaskClient, sandbox: Any
) -> None:
    link(client, "pipedrive-deal:42", 12, 345)
    auth = basic(ENV["PIPEDRIVE_USER"], ENV["PIPEDRIVE_PASSWORD"])
    resp = send(client, "pipedrive-deals", payload("pipedrive", "v2_lost_reason_edited.json"), auth)
    assert resp.status_code == 200
    assert resp.get_json()["outcome"] == "ignored"
    assert sandbox.calls() == []


# --- Salesforce -------------------------------------------------------------------------------


def test_salesforce_outbound_message_is_acked_then_delivered(
    app: Flask, client: FlaskClient, sandbox: Any
) -> None:
    body = payload("salesforce", "two_notifications.xml")
    headers = {"SOAPAction": '""'}
    resp = send(client, "salesforce-opportunities", body, headers, "text/xml; charset=utf-8")
    assert resp.status_code == 200
    assert resp.mimetype == "text/xml"
    text = resp.get_data(as_text=True)
    assert "<notificationsResponse" in text and "<Ack>true</Ack>" in text
    assert sandbox.calls() == []

    assert run_worker(app) == 1
    assert cancels(sandbox) == [(12, 345, 200)]
    (done,) = app.extensions["bridge"].ledger.queries.deliveries(status="succeeded")[0]
    assert done.note == "ACME renewal was lost"

    # Salesforce may deliver the message again: acked once more, nothing else called.
    again = send(client, "salesforce-opportunities", body, headers, "text/xml")
    assert "<Ack>true</Ack>" in again.get_data(as_text=True)
    assert run_worker(app) == 0
    assert len(sandbox.calls()) == 1


def test_salesforce_errors_are_soap_faults(client: FlaskClient, sandbox: Any) -> None:
    other_org = payload("salesforce", "two_notifications.xml").replace(
        ORG_ID.encode(), b"00D000000000099EAA"
    )
    for body, content_type, status in [
        (other_org, "text/xml", 401),
        (b"<notifications", "text/xml", 400),
        (b"{}", "application/json", 415),
    ]:
        resp = send(client, "salesforce-opportunities", body, {}, content_type)
        assert resp.status_code == status
        assert resp.mimetype == "text/xml"
        text = resp.get_data(as_text=True)
        assert "<soapenv:Fault>" in text and "<faultcode>soapenv:Client</faultcode>" in text
        assert "<Ack>" not in text
    assert sandbox.calls() == []


# --- Zendesk ----------------------------------------------------------------------------------


def test_zendesk_ticket_solved_cancels_the_linked_meeting(
    client: FlaskClient, sandbox: Any
) -> None:
    link(client, "zendesk-ticket:35436", 12, 345)
    body = payload("zendesk", "ticket_status_changed.json")
    event = canceled_event(send(client, "zendesk-tickets", body, zendesk(body)), 12, 345)
    assert event["cancel_note"] == "Ticket 35436 solved: Cancel my onboarding call"
    assert cancels(sandbox) == [(12, 345, 200)]


def test_zendesk_other_ticket_events_are_ignored(client: FlaskClient, sandbox: Any) -> None:
    link(client, "zendesk-ticket:35436", 12, 345)
    body = payload("zendesk", "ticket_priority_changed.json")
    headers = {**zendesk(body), "X-Zendesk-Webhook-Invocation-Id": "8350205583"}
    resp = send(client, "zendesk-tickets", body, headers)
    assert resp.status_code == 200
    assert resp.get_json()["outcome"] == "ignored"
    assert sandbox.calls() == []


# --- Freshdesk --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "fixture", "content_type", "headers", "note"),
    [
        (
            "freshdesk-json",
            "ticket_resolved.json",
            "application/json",
            {"Authorization": f"Bearer {ENV['FRESHDESK_TOKEN']}"},
            "Please cancel my demo",
        ),
        (
            "freshdesk-form",
            "ticket_resolved.form",
            "application/x-www-form-urlencoded",
            {"X-Freshdesk-Token": ENV["FRESHDESK_TOKEN"]},
            "Please cancel my demo (edited)",
        ),
    ],
    ids=["json-bearer", "form-header"],
)
def test_freshdesk_resolved_ticket_cancels_the_customers_meeting(
    client: FlaskClient,
    sandbox: Any,
    route: str,
    fixture: str,
    content_type: str,
    headers: dict[str, str],
    note: str,
) -> None:
    link(client, "jane@example.com", 12, 345)
    resp = send(client, route, payload("freshdesk", fixture), headers, content_type)
    assert canceled_event(resp, 12, 345)["cancel_note"] == note
    assert cancels(sandbox) == [(12, 345, 200)]


# --- Standard Webhooks ------------------------------------------------------------------------


def test_standard_webhook_cancels(client: FlaskClient, sandbox: Any) -> None:
    body = payload("standard", "meeting_canceled.json")
    resp = send(client, "standard-webhooks", body, standard(body))
    event = canceled_event(resp, 12, 345)
    assert event["cancel_note"] == "Customer went with a competitor"
    # The sender's retry carries the same webhook-id: replayed.
    again = send(client, "standard-webhooks", body, standard(body))
    assert again.headers["Idempotent-Replayed"] == "true"
    assert cancels(sandbox) == [(12, 345, 200)]


# --- Zapier / Make / n8n ----------------------------------------------------------------------


def test_zapier_form_body_cancels(client: FlaskClient, sandbox: Any) -> None:
    resp = send(
        client,
        "zapier-form",
        payload("generic", "zapier.form"),
        {"X-Bridge-Token": ENV["ZAP_FORM_TOKEN"]},
        "application/x-www-form-urlencoded",
    )
    assert canceled_event(resp, 12, 345)["cancel_note"] == "Deal ACME renewal was lost"
    assert cancels(sandbox) == [(12, 345, 200)]


def test_n8n_hmac_signed_json_cancels(client: FlaskClient, sandbox: Any) -> None:
    body = payload("generic", "n8n.json")
    resp = send(client, "n8n", body, body_hmac(body))
    assert canceled_event(resp, 12, 345)["cancel_note"] == "Lost in n8n: ACME renewal"
    assert cancels(sandbox) == [(12, 345, 200)]


# --- a changed byte breaks every signature ----------------------------------------------------

Signer = Callable[[bytes, str], dict[str, str]]
SIGNED: list[tuple[str, tuple[str, str], Signer]] = [
    ("hubspot-deals", ("hubspot", "deal_batch.json"), lambda b, u: hubspot_v3(b, u)),
    ("hubspot-deal-lost", ("hubspot-workflow", "legacy.json"), lambda b, u: hubspot_v3(b, u)),
    ("zendesk-tickets", ("zendesk", "ticket_status_changed.json"), lambda b, u: zendesk(b)),
    ("standard-webhooks", ("standard", "meeting_canceled.json"), lambda b, u: standard(b)),
    ("n8n", ("generic", "n8n.json"), lambda b, u: body_hmac(b)),
]


def test_a_single_changed_byte_is_401_for_every_signing_preset(
    client: FlaskClient, sandbox: Any
) -> None:
    link(client, "hubspot-deal:9876543210", 1, 10)
    link(client, "zendesk-ticket:35436", 2, 20)
    for route, fixture, sign in SIGNED:
        body = payload(*fixture)
        headers = sign(body, hook_url(route))
        tampered = signers.tampered(body)
        assert len(tampered) == len(body) and tampered != body
        resp = send(client, route, tampered, headers)
        assert resp.status_code == 401, (route, resp.get_data(as_text=True))
        assert resp.get_json()["reason"] == "signature_mismatch", route
        # The untouched body with the same headers goes through: the byte made the difference.
        assert send(client, route, body, headers).status_code in (200, 202), route
    assert all(status == 200 for *_, status in cancels(sandbox))
