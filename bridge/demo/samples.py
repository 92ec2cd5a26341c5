"""Correctly signed sample webhooks, one route per preset, for `meetbit-bridge demo`.

Each sample carries its route (exactly as a user would write it in `config/bridge.yaml`), the demo
secrets it reads, and the requests to send with the answer and the final outcome each must get.
Bodies come from the payload corpus (corpus.py); requests are signed when they are built, with
each vendor's documented scheme (signers.py), so their timestamps are always fresh.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bridge.demo import signers
from bridge.demo.corpus import payload
from bridge.demo.credentials import ENV, SALESFORCE_ORG

__all__ = ["NOTHING", "AdminCall", "Builder", "Sample", "SampleCall", "demo_samples"]

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
XML = "text/xml; charset=utf-8"
# The final outcome of a request the bridge refused at the door: no delivery was recorded.
NOTHING = "-"

Builder = Callable[[str], tuple[bytes, dict[str, str]]]
AdminCall = tuple[str, str, dict[str, Any] | None]


@dataclass(frozen=True)
class SampleCall:
    label: str
    # Given the full hook URL, the raw body and headers (Content-Type included), signed now.
    build: Builder
    # `<status> <outcome or problem reason>[ replayed]`, as the demo table shows it.
    expect: str
    # Where the request's deliveries end, their outcomes sorted: `canceled, ignored`; NOTHING
    # when none is recorded.
    final: str = "canceled"
    # Admin API calls to run first, e.g. a link for a `target.link` route.
    before: tuple[AdminCall, ...] = ()


@dataclass(frozen=True)
class Sample:
    route: str
    route_config: dict[str, Any]
    env: dict[str, str]
    calls: list[SampleCall]
    # The route's write-back to the sandbox's fake of the sender's vendor: `vendor` names the
    # sandbox prefix (`/hubspot`...), which becomes the entry's `base_url` once it runs.
    write_back: dict[str, Any] | None = None


def _link(key: str, calendar_id: int, event_id: int) -> AdminCall:
    return ("PUT", f"/admin/links/{key}", {"calendar_id": calendar_id, "event_id": event_id})


def _env(*names: str) -> dict[str, str]:
    return {name: ENV[name] for name in names}


def _ids(calendar: str, event: str) -> dict[str, str]:
    """A target by ids, read from the two expressions."""
    return {"calendar_id": "{{ " + calendar + " }}", "event_id": "{{ " + event + " }}"}


# -- builders: one per way of sending; signing happens inside, at call time -------------------


def _plain(body: bytes, content_type: str, headers: dict[str, str]) -> Builder:
    """Unsigned senders (Zapier, Pipedrive, Salesforce, Freshdesk): a credential header."""

    def build(url: str) -> tuple[bytes, dict[str, str]]:
        return body, {"Content-Type": content_type, **headers}

    return build


def _signed(body: bytes, sign: Callable[[str, bytes], dict[str, str]]) -> Builder:
    """A JSON body with the headers `sign(url, body)` computes when the request is built."""

    def build(url: str) -> tuple[bytes, dict[str, str]]:
        return body, {"Content-Type": JSON, **sign(url, body)}

    return build


def _tampered(builder: Builder) -> Builder:
    """The same signed request with one byte of the body changed after signing."""

    def build(url: str) -> tuple[bytes, dict[str, str]]:
        body, headers = builder(url)
        return signers.tampered(body), headers

    return build


def _hubspot_v3(body: bytes) -> Builder:
    secret = ENV["HUBSPOT_CLIENT_SECRET"]
    return _signed(body, lambda url, raw: signers.hubspot_v3_headers(secret, url, raw))


# -- the samples --------------------------------------------------------------------------------


def _zapier() -> Sample:
    base = json.loads(payload("generic", "deal_lost.json"))

    def deal(**changes: Any) -> bytes:
        return json.dumps({**base, **changes}, separators=(",", ":")).encode()

    token = {"X-Bridge-Token": ENV["ZAPIER_TOKEN"]}
    lost = payload("generic", "deal_lost.json")
    return Sample(
        route="zapier",
        route_config={
            "preset": "generic",
            "auth": {"header": "X-Bridge-Token", "token_env": "ZAPIER_TOKEN"},
            "when": "payload.stage == 'lost'",
            "target": _ids("payload.calendar_id", "payload.event_id"),
            "note": "{{ payload.note }}",
        },
        env=_env("ZAPIER_TOKEN"),
        calls=[
            SampleCall("deal lost", _plain(lost, JSON, token), "200 canceled"),
            SampleCall("same again", _plain(lost, JSON, token), "200 canceled replayed"),
            SampleCall(
                "deal won",
                _plain(deal(event_id=102, stage="won"), JSON, token),
                "200 ignored",
                final="ignored",
            ),
            SampleCall(
                "wrong token",
                _plain(deal(event_id=103), JSON, {"X-Bridge-Token": "not-the-token"}),
                "401 bad_credentials",
                final=NOTHING,
            ),
            SampleCall(
                "unknown event",
                _plain(deal(event_id=900_001), JSON, token),
                "404 not_found",
                final="not_found",
            ),
        ],
    )


def _zapier_form() -> Sample:
    auth = {
        "Authorization": signers.basic_auth(ENV["ZAPIER_FORM_USER"], ENV["ZAPIER_FORM_PASSWORD"])
    }
    body = payload("generic", "trial_ended.form")
    return Sample(
        route="zapier-form",
        route_config={
            "preset": "generic",
            "auth": {
                "basic_user_env": "ZAPIER_FORM_USER",
                "basic_password_env": "ZAPIER_FORM_PASSWORD",
            },
            "target": _ids("payload.calendar_id", "payload.event_id"),
            "note": "{{ payload.note }}",
        },
        env=_env("ZAPIER_FORM_USER", "ZAPIER_FORM_PASSWORD"),
        calls=[SampleCall("form fields", _plain(body, FORM, auth), "200 canceled")],
    )


def _n8n() -> Sample:
    secret = ENV["N8N_HMAC_SECRET"]

    def sign(url: str, body: bytes) -> dict[str, str]:
        return {"X-Signature": "sha256=" + signers.body_hmac(secret, body)}

    return Sample(
        route="n8n",
        route_config={
            "preset": "generic",
            "hmac": {"header": "X-Signature", "secret_env": "N8N_HMAC_SECRET", "prefix": "sha256="},
            "target": _ids("payload.calendar_id", "payload.event_id"),
            "note": "{{ payload.reason }}",
        },
        env=_env("N8N_HMAC_SECRET"),
        calls=[
            SampleCall(
                "signed body", _signed(payload("generic", "churned.json"), sign), "200 canceled"
            )
        ],
    )


_TEXT = "MeetBit meeting {{ result.event_id }} canceled ({{ result.outcome }})"


def _hubspot_note(record: str) -> dict[str, Any]:
    return {
        "vendor": "hubspot",
        "to": "hubspot-note",
        "token_env": "HUBSPOT_PRIVATE_APP_TOKEN",
        "object": "deal",
        "record": record,
        "text": _TEXT,
    }


def _hubspot() -> Sample:
    return Sample(
        route="hubspot-deals",
        route_config={
            "preset": "hubspot",
            "secret_env": "HUBSPOT_CLIENT_SECRET",
            "target": {"link": "hubspot-deal:{{ event.objectId }}"},
            "note": "Deal {{ event.objectId }} was marked lost in HubSpot",
        },
        env=_env("HUBSPOT_CLIENT_SECRET", "HUBSPOT_PRIVATE_APP_TOKEN"),
        write_back=_hubspot_note("{{ event.objectId }}"),
        calls=[
            SampleCall(
                # One deal lost, one other property change, one stage change, one resend.
                "batch of 4 events",
                _hubspot_v3(payload("hubspot", "deal_batch.json")),
                "202 queued",
                final="canceled, ignored, ignored",
                before=(_link("hubspot-deal:9876543210", 4, 401),),
            )
        ],
    )


def _either(name: str) -> str:
    """A deal property in either body HubSpot sends: the flat one (`"dealstage": "closedlost"`)
    or the legacy one (`"properties": {"dealstage": {"value": "closedlost"}}`)."""
    return f"(payload.{name} or payload.properties.{name}.value)"


def _hubspot_workflow() -> Sample:
    body = payload("hubspot-workflow", "legacy.json")
    flat = json.loads(payload("hubspot-workflow", "flat.json"))
    flat_body = json.dumps({**flat, "meetbit_event_id": "346"}, separators=(",", ":")).encode()
    return Sample(
        route="hubspot-deal-lost",
        route_config={
            "preset": "hubspot-workflow",
            "secret_env": "HUBSPOT_CLIENT_SECRET",
            "when": f"{_either('dealstage')} == 'closedlost'",
            "target": _ids(_either("meetbit_calendar_id"), _either("meetbit_event_id")),
            "note": "Deal {{ " + _either("dealname") + " }} was lost",
            "respond": "sync",
        },
        env=_env("HUBSPOT_CLIENT_SECRET", "HUBSPOT_PRIVATE_APP_TOKEN"),
        # The legacy body names the deal `objectId`, the flat one `hs_object_id`.
        write_back=_hubspot_note("{{ payload.objectId or payload.hs_object_id }}"),
        calls=[
            SampleCall("deal lost", _hubspot_v3(body), "200 canceled"),
            SampleCall("deal lost (flat)", _hubspot_v3(flat_body), "200 canceled"),
            SampleCall(
                "tampered body",
                _tampered(_hubspot_v3(body)),
                "401 signature_mismatch",
                final=NOTHING,
            ),
        ],
    )


def _pipedrive() -> Sample:
    user, password = ENV["PIPEDRIVE_WEBHOOK_USER"], ENV["PIPEDRIVE_WEBHOOK_PASSWORD"]
    auth = {"Authorization": signers.basic_auth(user, password)}
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
        env=_env("PIPEDRIVE_WEBHOOK_USER", "PIPEDRIVE_WEBHOOK_PASSWORD", "PIPEDRIVE_API_TOKEN"),
        write_back={
            "vendor": "pipedrive",
            "to": "pipedrive-note",
            "api_token_env": "PIPEDRIVE_API_TOKEN",
            "record": "{{ event.data.id }}",
            "text": _TEXT,
        },
        calls=[
            SampleCall(
                "deal lost (v2)",
                _plain(payload("pipedrive", "v2_deal_lost.json"), JSON, auth),
                "200 canceled",
                before=(_link("pipedrive-deal:42", 6, 601),),
            )
        ],
    )


def _salesforce() -> Sample:
    body = payload("salesforce", "closed_lost.xml")
    return Sample(
        route="salesforce-opportunities",
        route_config={
            "preset": "salesforce",
            "organization_ids": [SALESFORCE_ORG],
            "target": _ids(
                "event.sObject.MeetBit_Calendar_Id__c", "event.sObject.MeetBit_Event_Id__c"
            ),
            "note": "{{ event.sObject.Name }} was lost",
        },
        env=_env("SALESFORCE_CLIENT_ID", "SALESFORCE_CLIENT_SECRET"),
        write_back={
            "vendor": "salesforce",
            "to": "salesforce-task",
            "client_id_env": "SALESFORCE_CLIENT_ID",
            "client_secret_env": "SALESFORCE_CLIENT_SECRET",
            # The sample message carries no `Id` field (select it in the Outbound Message to
            # use `{{ event.sObject.Id }}`); the demo's opportunity ids follow the event id.
            "record": "006000000000{{ event.sObject.MeetBit_Event_Id__c }}AAA",
            "text": _TEXT,
        },
        calls=[
            SampleCall(
                "2 notifications",
                _plain(body, XML, {"SOAPAction": '""'}),
                "200 ack",
                final="canceled, ignored",
            )
        ],
    )


def _zendesk() -> Sample:
    secret = ENV["ZENDESK_SIGNING_SECRET"]

    def sign(url: str, body: bytes) -> dict[str, str]:
        headers = signers.zendesk_headers(secret, body)
        return {**headers, "X-Zendesk-Webhook-Invocation-Id": "8350205582"}

    return Sample(
        route="zendesk-tickets",
        route_config={
            "preset": "zendesk",
            "secret_env": "ZENDESK_SIGNING_SECRET",
            "target": {"link": "zendesk-ticket:{{ payload.detail.id }}"},
            "note": "Ticket {{ payload.detail.id }} was solved: {{ payload.detail.subject }}",
        },
        env=_env("ZENDESK_SIGNING_SECRET", "ZENDESK_EMAIL", "ZENDESK_API_TOKEN"),
        write_back={
            "vendor": "zendesk",
            "to": "zendesk-comment",
            "email_env": "ZENDESK_EMAIL",
            "api_token_env": "ZENDESK_API_TOKEN",
            "record": "{{ payload.detail.id }}",
            "text": _TEXT,
        },
        calls=[
            SampleCall(
                "ticket solved",
                _signed(payload("zendesk", "ticket_status_changed.json"), sign),
                "200 canceled",
                before=(_link("zendesk-ticket:35436", 8, 801),),
            )
        ],
    )


def _freshdesk() -> Sample:
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
        env=_env("FRESHDESK_WEBHOOK_TOKEN", "FRESHDESK_API_KEY"),
        write_back={
            "vendor": "freshdesk",
            "to": "freshdesk-note",
            "api_key_env": "FRESHDESK_API_KEY",
            "record": "{{ payload.freshdesk_webhook.ticket_id }}",
            "text": _TEXT,
        },
        calls=[
            SampleCall(
                "ticket resolved",
                _plain(payload("freshdesk", "ticket_resolved.json"), JSON, bearer),
                "200 canceled",
                before=(_link("jane@example.com", 9, 901),),
            )
        ],
    )


def _standard() -> Sample:
    secret = ENV["STANDARD_WEBHOOK_SECRET"]

    def sign(url: str, body: bytes) -> dict[str, str]:
        return signers.standard_headers(secret, body, "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W")

    return Sample(
        route="standard-webhooks",
        route_config={
            "preset": "standard",
            "secret_env": "STANDARD_WEBHOOK_SECRET",
            "when": "payload.type == 'deal.lost'",
            "target": _ids("payload.data.calendar_id", "payload.data.event_id"),
            "note": "{{ payload.data.reason }}",
        },
        env=_env("STANDARD_WEBHOOK_SECRET"),
        calls=[
            SampleCall(
                "deal.lost", _signed(payload("standard", "deal_lost.json"), sign), "200 canceled"
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
        _zendesk(),
        _freshdesk(),
        _standard(),
    ]
