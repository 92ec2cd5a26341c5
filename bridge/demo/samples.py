"""Correctly signed sample webhooks, one route per preset, for `meetbit-bridge demo`.

Each sample carries its route (exactly as a user would write it in `config/bridge.yaml`), the demo
secrets it reads, and the requests to send with the answer each must get. Requests are signed
when they are built, with each vendor's documented scheme, so their timestamps are always fresh.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode
from xml.sax.saxutils import escape

from standardwebhooks import Webhook

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
XML = "text/xml; charset=utf-8"

Builder = Callable[[str], tuple[bytes, dict[str, str]]]
AdminCall = tuple[str, str, dict[str, Any] | None]


@dataclass(frozen=True)
class SampleCall:
    label: str
    # Given the full hook URL, the raw body and headers (Content-Type included), signed now.
    build: Builder
    # `<status> <outcome or problem reason>[ replayed]`, as the demo table shows it.
    expect: str
    # Admin API calls to run first, e.g. a link for a `target.link` route.
    before: tuple[AdminCall, ...] = ()


@dataclass(frozen=True)
class Sample:
    route: str
    route_config: dict[str, Any]
    env: dict[str, str]
    calls: list[SampleCall]


# Demo secrets: never use these outside the demo.
ENV = {
    "ZAPIER_TOKEN": "demo-zapier-token",
    "ZAPIER_FORM_USER": "zapier",
    "ZAPIER_FORM_PASSWORD": "demo-zapier-password",
    "N8N_HMAC_SECRET": "demo-n8n-hmac-secret",
    "HUBSPOT_CLIENT_SECRET": "demo-hubspot-client-secret",
    "PIPEDRIVE_WEBHOOK_USER": "pipedrive",
    "PIPEDRIVE_WEBHOOK_PASSWORD": "demo-pipedrive-password",
    "ZENDESK_SIGNING_SECRET": "ZGVtby16ZW5kZXNrLXNpZ25pbmctc2VjcmV0",
    "FRESHDESK_WEBHOOK_TOKEN": "demo-freshdesk-token",
    # A base64 key behind the `whsec_` prefix, as Standard Webhooks senders show it.
    "STANDARD_WEBHOOK_SECRET": "whsec_ZGVtby1zdGFuZGFyZC13ZWJob29rcy1rZXktMzJi",
}
SALESFORCE_ORG = "00D000000000062EAA"


def _link(key: str, calendar_id: int, event_id: int) -> AdminCall:
    return ("PUT", f"/admin/links/{key}", {"calendar_id": calendar_id, "event_id": event_id})


def _env(*names: str) -> dict[str, str]:
    return {name: ENV[name] for name in names}


# ---------------------------------------------------------------------------------------------
# Body encodings and credentials


def _json(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def _form(data: dict[str, Any]) -> bytes:
    return urlencode({k: str(v) for k, v in data.items()}).encode()


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _b64_hmac(key: bytes, message: bytes) -> str:
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()


def _soap(org_id: str, notifications: list[tuple[str, dict[str, str]]]) -> bytes:
    """A Salesforce Outbound Message `notifications` envelope with Opportunity sObjects."""
    items = "".join(
        f"<Notification><Id>{escape(nid)}</Id>"
        '<sObject xsi:type="sf:Opportunity" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
        + "".join(f"<sf:{k}>{escape(v)}</sf:{k}>" for k, v in fields.items())
        + "</sObject></Notification>"
        for nid, fields in notifications
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"'
        ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>'
        '<notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
        f"<OrganizationId>{org_id}</OrganizationId><ActionId>04k000000000001AAA</ActionId>"
        f'<SessionId xsi:nil="true"/>{items}</notifications></soapenv:Body></soapenv:Envelope>'
    ).encode()


# ---------------------------------------------------------------------------------------------
# Builders: one per way of sending; signing happens inside, at call time


def _plain(body: bytes, content_type: str, headers: dict[str, str]) -> Builder:
    """Unsigned senders (Zapier, Pipedrive, Salesforce, Freshdesk): a credential header."""

    def build(url: str) -> tuple[bytes, dict[str, str]]:
        return body, {"Content-Type": content_type, **headers}

    return build


def _body_hmac(body: bytes, secret: str, header: str, prefix: str) -> Builder:
    """A `generic` route's `hmac`: hex HMAC-SHA256 of the raw body."""

    def build(url: str) -> tuple[bytes, dict[str, str]]:
        digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return body, {"Content-Type": JSON, header: prefix + digest}

    return build


def _hubspot_v3(body: bytes, secret: str) -> Builder:
    """base64 HMAC-SHA256 of method + URI + body + epoch-ms timestamp, keyed by the client secret.
    https://developers.hubspot.com/docs/api/webhooks/validating-requests"""

    def build(url: str) -> tuple[bytes, dict[str, str]]:
        timestamp = str(int(time.time() * 1000))
        message = b"POST" + url.encode() + body + timestamp.encode()
        return body, {
            "Content-Type": JSON,
            "X-HubSpot-Signature-v3": _b64_hmac(secret.encode(), message),
            "X-HubSpot-Request-Timestamp": timestamp,
        }

    return build


def _zendesk(body: bytes, secret: str, invocation_id: str) -> Builder:
    """base64 HMAC-SHA256 of the ISO timestamp followed by the body; the key is the secret as is.
    https://developer.zendesk.com/documentation/webhooks/verifying/"""

    def build(url: str) -> tuple[bytes, dict[str, str]]:
        timestamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return body, {
            "Content-Type": JSON,
            "X-Zendesk-Webhook-Signature": _b64_hmac(secret.encode(), timestamp.encode() + body),
            "X-Zendesk-Webhook-Signature-Timestamp": timestamp,
            "X-Zendesk-Webhook-Invocation-Id": invocation_id,
        }

    return build


def _standard(body: bytes, secret: str, msg_id: str) -> Builder:
    """Standard Webhooks, signed by the specification's reference library."""

    def build(url: str) -> tuple[bytes, dict[str, str]]:
        now = datetime.now(UTC)
        return body, {
            "Content-Type": JSON,
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, now, body.decode()),
        }

    return build


def _tampered(builder: Builder) -> Builder:
    """The same signed request with one byte of the body changed after signing."""

    def build(url: str) -> tuple[bytes, dict[str, str]]:
        body, headers = builder(url)
        index = next(i for i, byte in enumerate(body) if chr(byte).isdigit())
        changed = bytes([ord("0") + (body[index] - ord("0") + 1) % 10])
        return body[:index] + changed + body[index + 1 :], headers

    return build


# ---------------------------------------------------------------------------------------------
# The samples


def _zapier() -> Sample:
    def lost(event_id: int, stage: str = "lost") -> bytes:
        note = "Deal ACME renewal was lost in the CRM"
        return _json({"stage": stage, "calendar_id": 1, "event_id": event_id, "note": note})

    token = {"X-Bridge-Token": ENV["ZAPIER_TOKEN"]}
    return Sample(
        route="zapier",
        route_config={
            "preset": "generic",
            "auth": {"header": "X-Bridge-Token", "token_env": "ZAPIER_TOKEN"},
            "when": "payload.stage == 'lost'",
            "target": {
                "calendar_id": "{{ payload.calendar_id }}",
                "event_id": "{{ payload.event_id }}",
            },
            "note": "{{ payload.note }}",
        },
        env=_env("ZAPIER_TOKEN"),
        calls=[
            SampleCall("deal lost", _plain(lost(101), JSON, token), "200 canceled"),
            SampleCall("same again", _plain(lost(101), JSON, token), "200 canceled replayed"),
            SampleCall("deal won", _plain(lost(102, "won"), JSON, token), "200 ignored"),
            SampleCall(
                "wrong token",
                _plain(lost(103), JSON, {"X-Bridge-Token": "not-the-token"}),
                "401 bad_credentials",
            ),
            SampleCall("unknown event", _plain(lost(900_001), JSON, token), "404 not_found"),
        ],
    )


def _zapier_form() -> Sample:
    body = _form({"calendar_id": 2, "event_id": 201, "note": "Trial ended without a purchase"})
    auth = {"Authorization": _basic(ENV["ZAPIER_FORM_USER"], ENV["ZAPIER_FORM_PASSWORD"])}
    return Sample(
        route="zapier-form",
        route_config={
            "preset": "generic",
            "auth": {
                "basic_user_env": "ZAPIER_FORM_USER",
                "basic_password_env": "ZAPIER_FORM_PASSWORD",
            },
            "target": {
                "calendar_id": "{{ payload.calendar_id }}",
                "event_id": "{{ payload.event_id }}",
            },
            "note": "{{ payload.note }}",
        },
        env=_env("ZAPIER_FORM_USER", "ZAPIER_FORM_PASSWORD"),
        calls=[SampleCall("form fields", _plain(body, FORM, auth), "200 canceled")],
    )


def _n8n() -> Sample:
    body = _json({"calendar_id": 3, "event_id": 301, "reason": "Customer churned"})
    return Sample(
        route="n8n",
        route_config={
            "preset": "generic",
            "hmac": {"header": "X-Signature", "secret_env": "N8N_HMAC_SECRET", "prefix": "sha256="},
            "target": {
                "calendar_id": "{{ payload.calendar_id }}",
                "event_id": "{{ payload.event_id }}",
            },
            "note": "{{ payload.reason }}",
        },
        env=_env("N8N_HMAC_SECRET"),
        calls=[
            SampleCall(
                "signed body",
                _body_hmac(body, ENV["N8N_HMAC_SECRET"], "X-Signature", "sha256="),
                "200 canceled",
            )
        ],
    )


def _hubspot() -> Sample:
    def change(event_id: int, deal: int, prop: str, value: str) -> dict[str, Any]:
        return {
            "eventId": event_id,
            "subscriptionId": 2345678,
            "portalId": 62515,
            "appId": 54321,
            "occurredAt": 1717000000000,
            "subscriptionType": "deal.propertyChange",
            "attemptNumber": 0,
            "objectId": deal,
            "propertyName": prop,
            "propertyValue": value,
            "changeSource": "CRM_UI",
        }

    batch = [
        change(4001, 4_000_001, "dealstage", "closedlost"),
        change(4002, 4_000_002, "dealstage", "contractsent"),
    ]
    return Sample(
        route="hubspot-deals",
        route_config={
            "preset": "hubspot",
            "secret_env": "HUBSPOT_CLIENT_SECRET",
            "target": {"link": "hubspot-deal:{{ event.objectId }}"},
            "note": "Deal {{ event.objectId }} was marked lost in HubSpot",
        },
        env=_env("HUBSPOT_CLIENT_SECRET"),
        calls=[
            SampleCall(
                "batch of 2 events",
                _hubspot_v3(_json(batch), ENV["HUBSPOT_CLIENT_SECRET"]),
                "202 queued",
                before=(_link("hubspot-deal:4000001", 4, 401),),
            )
        ],
    )


def _hubspot_workflow() -> Sample:
    def deal(name: str, event_id: int) -> bytes:
        values = {
            "dealname": name,
            "dealstage": "closedlost",
            "meetbit_calendar_id": "5",
            "meetbit_event_id": str(event_id),
        }
        properties = {k: {"value": v, "source": "CRM_UI"} for k, v in values.items()}
        return _json(
            {"objectId": 5_000_000 + event_id, "objectType": "DEAL", "properties": properties}
        )

    secret = ENV["HUBSPOT_CLIENT_SECRET"]
    return Sample(
        route="hubspot-deal-lost",
        route_config={
            "preset": "hubspot-workflow",
            "secret_env": "HUBSPOT_CLIENT_SECRET",
            "when": "payload.properties.dealstage.value == 'closedlost'",
            "target": {
                "calendar_id": "{{ payload.properties.meetbit_calendar_id.value }}",
                "event_id": "{{ payload.properties.meetbit_event_id.value }}",
            },
            "note": "Deal {{ payload.properties.dealname.value }} was lost",
            "respond": "sync",
        },
        env=_env("HUBSPOT_CLIENT_SECRET"),
        calls=[
            SampleCall("deal lost", _hubspot_v3(deal("ACME renewal", 501), secret), "200 canceled"),
            SampleCall(
                "tampered body",
                _tampered(_hubspot_v3(deal("Globex expansion", 502), secret)),
                "401 signature_mismatch",
            ),
        ],
    )


def _pipedrive() -> Sample:
    body = _json(
        {
            "meta": {
                "action": "change",
                "entity": "deal",
                "entity_id": "6001",
                "id": "5b3a4c2e-6f1d-4e8a-9b7c-0d1e2f3a4b5c",
                "timestamp": "2025-05-01T10:00:00.000Z",
                "version": "2.0",
                "webhook_id": "99",
                "attempt": 1,
            },
            "data": {"id": 6001, "title": "ACME renewal", "status": "lost", "lost_reason": "Price"},
            "previous": {"status": "open"},
        }
    )
    auth = {
        "Authorization": _basic(ENV["PIPEDRIVE_WEBHOOK_USER"], ENV["PIPEDRIVE_WEBHOOK_PASSWORD"])
    }
    return Sample(
        route="pipedrive-deals",
        route_config={
            "preset": "pipedrive",
            "auth": {
                "basic_user_env": "PIPEDRIVE_WEBHOOK_USER",
                "basic_password_env": "PIPEDRIVE_WEBHOOK_PASSWORD",
            },
            "target": {"link": "pipedrive-deal:{{ event.data.id }}"},
            "note": "Deal {{ event.data.title }} was lost ({{ event.data.lost_reason }})",
        },
        env=_env("PIPEDRIVE_WEBHOOK_USER", "PIPEDRIVE_WEBHOOK_PASSWORD"),
        calls=[
            SampleCall(
                "deal lost (v2)",
                _plain(body, JSON, auth),
                "200 canceled",
                before=(_link("pipedrive-deal:6001", 6, 601),),
            )
        ],
    )


def _salesforce() -> Sample:
    def opportunity(stage: str, event_id: int) -> dict[str, str]:
        return {
            "StageName": stage,
            "Name": f"Opportunity {event_id}",
            "MeetBit_Calendar_Id__c": "7",
            "MeetBit_Event_Id__c": str(event_id),
        }

    body = _soap(
        SALESFORCE_ORG,
        [
            ("04l000000000701AAA", opportunity("Closed Lost", 701)),
            ("04l000000000702AAA", opportunity("Negotiation/Review", 702)),
        ],
    )
    return Sample(
        route="salesforce-opportunities",
        route_config={
            "preset": "salesforce",
            "organization_ids": [SALESFORCE_ORG],
            "target": {
                "calendar_id": "{{ event.sObject.MeetBit_Calendar_Id__c }}",
                "event_id": "{{ event.sObject.MeetBit_Event_Id__c }}",
            },
            "note": "{{ event.sObject.Name }} was lost",
        },
        env={},
        calls=[SampleCall("2 notifications", _plain(body, XML, {"SOAPAction": '""'}), "200 ack")],
    )


def _zendesk_sample() -> Sample:
    body = _json(
        {
            "type": "zen:event-type:ticket.status_changed",
            "account_id": 12514403,
            "id": "8e1f0a52-3c4d-4b6e-9f70-81a2b3c4d5e6",
            "time": "2025-05-01T10:00:00Z",
            "zendesk_event_version": "2022-11-06",
            "subject": "zen:ticket:8001",
            "detail": {"id": "8001", "status": "SOLVED", "subject": "Please cancel my onboarding"},
            "event": {"previous": "OPEN", "current": "SOLVED"},
        }
    )
    return Sample(
        route="zendesk-tickets",
        route_config={
            "preset": "zendesk",
            "secret_env": "ZENDESK_SIGNING_SECRET",
            "target": {"link": "zendesk-ticket:{{ payload.detail.id }}"},
            "note": "Ticket {{ payload.detail.id }} was solved: {{ payload.detail.subject }}",
        },
        env=_env("ZENDESK_SIGNING_SECRET"),
        calls=[
            SampleCall(
                "ticket solved",
                _zendesk(body, ENV["ZENDESK_SIGNING_SECRET"], "8350205582"),
                "200 canceled",
                before=(_link("zendesk-ticket:8001", 8, 801),),
            )
        ],
    )


def _freshdesk() -> Sample:
    ticket = {
        "ticket_id": 9001,
        "ticket_subject": "Please cancel my demo",
        "ticket_status": "Resolved",
        "ticket_contact_email": "ada@example.com",
    }
    bearer = {"Authorization": f"Bearer {ENV['FRESHDESK_WEBHOOK_TOKEN']}"}
    return Sample(
        route="freshdesk-tickets",
        route_config={
            "preset": "freshdesk",
            "auth": {"bearer_env": "FRESHDESK_WEBHOOK_TOKEN"},
            "when": "payload.freshdesk_webhook.ticket_status in ['Resolved', 'Closed']",
            "target": {"customer_email": "{{ payload.freshdesk_webhook.ticket_contact_email }}"},
            "note": "Ticket #{{ payload.freshdesk_webhook.ticket_id }} was resolved",
        },
        env=_env("FRESHDESK_WEBHOOK_TOKEN"),
        calls=[
            SampleCall(
                "ticket resolved",
                _plain(_json({"freshdesk_webhook": ticket}), JSON, bearer),
                "200 canceled",
                before=(_link("ada@example.com", 9, 901),),
            )
        ],
    )


def _standard_sample() -> Sample:
    body = _json(
        {
            "type": "deal.lost",
            "timestamp": "2025-05-01T10:00:00Z",
            "data": {"calendar_id": 10, "event_id": 1001, "reason": "Customer went elsewhere"},
        }
    )
    return Sample(
        route="standard-webhooks",
        route_config={
            "preset": "standard",
            "secret_env": "STANDARD_WEBHOOK_SECRET",
            "when": "payload.type == 'deal.lost'",
            "target": {
                "calendar_id": "{{ payload.data.calendar_id }}",
                "event_id": "{{ payload.data.event_id }}",
            },
            "note": "{{ payload.data.reason }}",
        },
        env=_env("STANDARD_WEBHOOK_SECRET"),
        calls=[
            SampleCall(
                "deal.lost",
                _standard(body, ENV["STANDARD_WEBHOOK_SECRET"], "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"),
                "200 canceled",
            )
        ],
    )


def demo_samples() -> list[Sample]:
    """Every preset, in the order the demo shows them."""
    return [
        _zapier(),
        _zapier_form(),
        _n8n(),
        _hubspot(),
        _hubspot_workflow(),
        _pipedrive(),
        _salesforce(),
        _zendesk_sample(),
        _freshdesk(),
        _standard_sample(),
    ]
