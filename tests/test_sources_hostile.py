"""What a hostile (or merely unusual) sender can send the presets: never a 500, never a bypass.

Timestamps that are not plain epoch digits, the URL exactly as HubSpot signed it, deep or huge
XML and JSON, non-finite numbers, NUL and unpaired surrogates in bodies, look-alike Salesforce
organization ids, and idempotency keys carrying control characters. Signatures are computed
here from the vendors' documented formulas, independently of the bridge's code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from bridge.errors import BadRequest, Unauthorized
from bridge.jsonbody import MAX_DEPTH as MAX_JSON_DEPTH
from bridge.ledger import Ledger
from bridge.sources.base import (
    AuthConfig,
    InboundRequest,
    SourceOptions,
    parse_form,
    parse_json,
)
from bridge.sources.generic import GenericSource
from bridge.sources.hubspot import HubSpotSource
from bridge.sources.pipedrive import PipedriveSource
from bridge.sources.salesforce import MAX_XML_DEPTH, MAX_XML_ELEMENTS, SalesforceSource
from bridge.sources.standard import StandardWebhooksSource
from bridge.sources.zendesk import ZendeskSource

HUBSPOT_SECRET = "5b8f0c1e-2d3a-4f6b-8c9d-0e1f2a3b4c5d"
STANDARD_KEY = b"hostile-standard-webhooks-key-32b"
STANDARD_SECRET = "whsec_" + base64.b64encode(STANDARD_KEY).decode()
ZAP_TOKEN = "tok-1"
ORG = "00D000000000062EAA"
ENV = {"HUBSPOT_CLIENT_SECRET": HUBSPOT_SECRET, "STANDARD_SECRET": STANDARD_SECRET}
ROUTES = """
routes:
  hubspot-deals:
    preset: hubspot
    secret_env: HUBSPOT_CLIENT_SECRET
    respond: sync
    target: {link: "hubspot-deal:{{ event.objectId }}"}
    note: "Deal lost"
  salesforce:
    preset: salesforce
    organization_ids: ["00D000000000062"]
    target: {calendar_id: "{{ event.sObject.Cal__c }}", event_id: "{{ event.sObject.Ev__c }}"}
    note: "Opportunity lost"
  std:
    preset: standard
    secret_env: STANDARD_SECRET
    target: {calendar_id: "{{ payload.calendar_id }}", event_id: "{{ payload.event_id }}"}
    note: "Canceled"
  zap:
    preset: generic
    auth: {header: X-Bridge-Token, token_env: ZAP_TOKEN}
    target: {calendar_id: "{{ payload.calendar_id }}", event_id: "{{ payload.event_id }}"}
    note: "{{ payload.note | default('Canceled', true) }}"
  zap-form:
    preset: generic
    auth: {header: X-Bridge-Token, token_env: ZAP_TOKEN}
    target: {calendar_id: "{{ payload.calendar_id }}", event_id: "{{ payload.event_id }}"}
    note: "{{ payload.note | default('Canceled', true) }}"
"""
ZAP = {"Content-Type": "application/json", "X-Bridge-Token": ZAP_TOKEN}


@pytest.fixture
def client(make_app: Callable[..., Flask]) -> FlaskClient:
    return make_app(ROUTES, **ENV).test_client()


def problem(resp: TestResponse, status: int) -> dict[str, Any]:
    text = resp.get_data(as_text=True)
    assert resp.status_code == status, text
    assert "Traceback" not in text
    body: dict[str, Any] = resp.get_json()
    return body


def b64_hmac(key: bytes, message: bytes) -> str:
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()


def hubspot_v3(signed_uri: str, body: bytes, timestamp: str) -> dict[str, str]:
    """HubSpot's documented v3: base64 HMAC-SHA256 of method + URI + body + raw timestamp."""
    return {
        "Content-Type": "application/json",
        "X-HubSpot-Signature-v3": b64_hmac(
            HUBSPOT_SECRET.encode(), b"POST" + signed_uri.encode() + body + timestamp.encode()
        ),
        "X-HubSpot-Request-Timestamp": timestamp,
    }


def now_ms() -> str:
    return str(int(time.time() * 1000))


def inbound(
    body: bytes,
    headers: dict[str, str] | None = None,
    content_type: str = "application/json",
    received_at: float = 1_717_000_100.0,
) -> InboundRequest:
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    return InboundRequest(
        "POST", "https://b.example/hooks/x", lowered, {}, body, content_type, received_at
    )


# --- 1. HubSpot v3 timestamps ------------------------------------------------------------------


@pytest.mark.parametrize(
    "timestamp",
    [
        "9" * 400,  # int() takes it; dividing by 1000 into a float overflowed (a 500)
        "1" * 5000,  # over int()'s digit limit
        "+1717000100000",
        "-1717000100000",
        "1_717_000_100_000",
        "\uff11\uff17\uff11\uff17\uff10\uff10\uff10\uff11\uff10\uff10\uff10\uff10\uff10",
        "1717000100000.0",
        "1e12",
    ],
)
def test_hubspot_v3_timestamp_that_is_not_epoch_digits_is_401_bad_timestamp(
    client: FlaskClient, timestamp: str
) -> None:
    body = b"[]"
    # Correctly signed over the raw header value: only the timestamp rule may refuse it.
    headers = hubspot_v3("http://localhost/hooks/hubspot-deals", body, timestamp)
    resp = client.post("/hooks/hubspot-deals", data=body, headers=headers)
    assert problem(resp, 401)["reason"] == "bad_timestamp"


def test_hubspot_v3_far_future_timestamp_is_stale() -> None:
    source = HubSpotSource(SourceOptions(secrets=(HUBSPOT_SECRET,)))
    headers = {"X-HubSpot-Signature-v3": "AAAA", "X-HubSpot-Request-Timestamp": "9" * 15}
    with pytest.raises(Unauthorized) as exc:
        source.verify(inbound(b"[]", headers))
    assert exc.value.reason == "stale_timestamp"


@pytest.mark.parametrize("timestamp", ["+{now}", "{now}\u0660", "{now}_0", "{now}.0"])
def test_standard_webhooks_timestamp_must_be_plain_digits(timestamp: str) -> None:
    now = 1_746_093_600
    raw = timestamp.format(now=now)
    body = b'{"calendar_id": 1, "event_id": 2}'
    signature = "v1," + b64_hmac(STANDARD_KEY, f"msg_1.{raw}.".encode() + body)
    headers = {"webhook-id": "msg_1", "webhook-timestamp": raw, "webhook-signature": signature}
    source = StandardWebhooksSource(SourceOptions(secrets=(STANDARD_SECRET,)))
    with pytest.raises(Unauthorized) as exc:
        source.verify(inbound(body, headers, received_at=float(now)))
    assert exc.value.reason == "bad_timestamp"


# --- 2. HubSpot signatures over the URL exactly as sent ----------------------------------------

# A query HubSpot would call as is. Per HubSpot's v3 rule only %3A %2F %3F %40 %21 %24 %27 %28
# %29 %2A %2C %3B are decoded before signing; %C3%A9, %7E and %20 stay as sent.
# https://developers.hubspot.com/docs/apps/developer-platform/build-apps/authentication/request-validation
SENT_QUERY = "redirect=https%3A%2F%2Fshop.example%2Fcaf%C3%A9%7E&state=a%3Ab%2Cc%20d%21"
V3_SIGNED_QUERY = "redirect=https://shop.example/caf%C3%A9%7E&state=a:b,c%20d!"


def test_hubspot_v3_signs_the_sent_url_with_only_the_documented_escapes_decoded(
    client: FlaskClient,
) -> None:
    body = b"[]"
    signed = "http://localhost/hooks/hubspot-deals?" + V3_SIGNED_QUERY
    headers = hubspot_v3(signed, body, now_ms())
    resp = client.post("/hooks/hubspot-deals?" + SENT_QUERY, data=body, headers=headers)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    # The same signature does not cover another query.
    resp = client.post("/hooks/hubspot-deals?" + SENT_QUERY + "x", data=body, headers=headers)
    assert problem(resp, 401)["reason"] == "signature_mismatch"


def test_hubspot_v2_signs_the_sent_url_exactly(client: FlaskClient) -> None:
    body = b"[]"
    uri = "http://localhost/hooks/hubspot-deals?" + SENT_QUERY
    signature = hashlib.sha256(HUBSPOT_SECRET.encode() + b"POST" + uri.encode() + body)
    headers = {
        "Content-Type": "application/json",
        "X-HubSpot-Signature": signature.hexdigest(),
        "X-HubSpot-Signature-Version": "v2",
    }
    resp = client.post("/hooks/hubspot-deals?" + SENT_QUERY, data=body, headers=headers)
    assert resp.status_code == 200, resp.get_data(as_text=True)


def test_hubspot_v3_behind_a_public_url_signs_the_sent_path_and_query(
    make_app: Callable[..., Flask],
) -> None:
    client = make_app(ROUTES, BRIDGE_PUBLIC_URL="https://bridge.example.com", **ENV).test_client()
    body = b"[]"
    signed = "https://bridge.example.com/hooks/hubspot-deals?" + V3_SIGNED_QUERY
    headers = hubspot_v3(signed, body, now_ms())
    resp = client.post("/hooks/hubspot-deals?" + SENT_QUERY, data=body, headers=headers)
    assert resp.status_code == 200, resp.get_data(as_text=True)


# --- 3. Salesforce: XML depth and size, organization ids ---------------------------------------


def outbound(sobject_inner: str, *, org: str = ORG, notifications: int = 1) -> bytes:
    notification = (
        "<Notification><Id>04l000000000001AAA</Id>"
        f'<sObject xsi:type="sf:Opportunity" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
        f"{sobject_inner}</sObject></Notification>"
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"'
        ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>'
        '<notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
        f"<OrganizationId>{org}</OrganizationId>{notification * notifications}"
        "</notifications></soapenv:Body></soapenv:Envelope>"
    ).encode()


def test_salesforce_sobject_nested_5000_deep_is_a_400_fault(client: FlaskClient) -> None:
    body = outbound("<a>" * 5000 + "x" + "</a>" * 5000)
    resp = client.post("/hooks/salesforce", data=body, content_type="text/xml")
    text = resp.get_data(as_text=True)
    assert resp.status_code == 400, text
    assert "soapenv:Client" in text and f"{MAX_XML_DEPTH} levels" in text


def test_salesforce_nesting_within_the_bound_still_parses() -> None:
    # Envelope, Body, notifications, Notification, sObject: 5 levels before the fields.
    inner_levels = MAX_XML_DEPTH - 5
    body = outbound("<a>" * inner_levels + "x" + "</a>" * inner_levels)
    source = SalesforceSource(SourceOptions(organization_ids=(ORG,)))
    source.verify(inbound(body, content_type="text/xml"))
    parsed = source.parse(inbound(body, content_type="text/xml"))
    assert parsed.items[0].event["sObject"]["type"] == "Opportunity"
    too_deep = outbound("<a>" * (inner_levels + 1) + "x" + "</a>" * (inner_levels + 1))
    with pytest.raises(BadRequest) as exc:
        source.parse(inbound(too_deep, content_type="text/xml"))
    assert exc.value.reason == "xml_too_deep"


def test_salesforce_too_many_elements_is_refused_while_parsing() -> None:
    body = outbound("<f/>" * (MAX_XML_ELEMENTS + 1))
    source = SalesforceSource(SourceOptions(organization_ids=(ORG,)))
    with pytest.raises(BadRequest) as exc:
        source.verify(inbound(body, content_type="text/xml"))
    assert exc.value.reason == "xml_too_large"


@pytest.mark.parametrize(
    ("allowed", "given", "ok"),
    [
        ("00D000000000062EAA", "00D000000000062EAA", True),  # 18 vs 18: exact
        ("00D000000000062EAA", "00D000000000062EAB", False),
        ("00D000000000062EAA", "00D000000000062", False),  # 18 allowed, 15 given: no
        ("00D000000000062", "00D000000000062", True),  # 15 vs 15: exact
        ("00D000000000062", "00D000000000062EAA", True),  # 15 allowed: the 18's first 15
        ("00D000000000062", "00d000000000062EAA", False),  # ids are case-sensitive
        ("00D000000000062", "00D000000000062ZZZZZZZZ", False),  # a prefix is not enough
        ("00D000000000062", "00D000000000062EA", False),  # 17 characters
        ("00D000000000062", "00D000000000062E-A", False),  # not alphanumeric
        ("00D000000000062", "00D000000000062EAAA", False),  # 19 characters
    ],
)
def test_salesforce_organization_id_matching(allowed: str, given: str, ok: bool) -> None:
    source = SalesforceSource(SourceOptions(organization_ids=(allowed,)))
    request = inbound(outbound("<sf:Name>x</sf:Name>", org=given), content_type="text/xml")
    if ok:
        source.verify(request)
        return
    with pytest.raises(Unauthorized) as exc:
        source.verify(request)
    assert exc.value.reason == "organization_not_allowed"


def test_salesforce_malformed_organization_id_is_not_echoed() -> None:
    source = SalesforceSource(SourceOptions(organization_ids=(ORG,)))
    body = outbound("", org="00D000000000062EAA&#10;forged log line")
    with pytest.raises(Unauthorized) as exc:
        source.verify(inbound(body, content_type="text/xml"))
    assert "forged" not in exc.value.detail and "\n" not in exc.value.detail


# --- 4. JSON depth, non-finite numbers, NUL and unpaired surrogates ----------------------------


def nested(depth: int) -> bytes:
    """An object of `depth` nested containers in all (the top-level object counts as one)."""
    inner = b"[" * (depth - 1) + b"]" * (depth - 1)
    return b'{"calendar_id": 1, "event_id": 2, "deep": ' + inner + b"}"


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 900, 10_000, 200_000])
def test_json_nested_past_the_bound_is_a_400_naming_the_limit(
    client: FlaskClient, depth: int
) -> None:
    resp = client.post("/hooks/zap", data=nested(depth), headers=ZAP)
    body = problem(resp, 400)
    assert body["reason"] == "json_too_deep"
    assert f"{MAX_JSON_DEPTH} levels" in body["detail"]


def test_signed_hubspot_batch_10k_deep_is_a_400(client: FlaskClient) -> None:
    body = b'[{"eventId": 1, "x": ' + b"[" * 10_000 + b"]" * 10_000 + b"}]"
    headers = hubspot_v3("http://localhost/hooks/hubspot-deals", body, now_ms())
    resp = client.post("/hooks/hubspot-deals", data=body, headers=headers)
    assert problem(resp, 400)["reason"] == "json_too_deep"


def test_json_at_the_bound_and_brackets_inside_strings_are_fine() -> None:
    assert parse_json(nested(MAX_JSON_DEPTH))["calendar_id"] == 1
    text = '{"note": "' + "[{" * 5000 + '\\" [[[ \\\\", "k[": ["]]]]"]}'
    assert parse_json(text.encode())["k["] == ["]]]]"]


@pytest.mark.parametrize(
    "body",
    [
        b'{"calendar_id": 1, "event_id": 1e999}',  # overflows to inf without a literal
        b'{"calendar_id": 1, "event_id": -1e999}',
        b'{"calendar_id": 1, "event_id": NaN}',
        b'{"calendar_id": 1, "event_id": Infinity}',
        b'{"calendar_id": 1, "event_id": -Infinity}',
    ],
)
def test_non_finite_numbers_are_refused_at_parse_time(client: FlaskClient, body: bytes) -> None:
    resp = client.post("/hooks/zap", data=body, headers=ZAP)
    assert problem(resp, 400)["reason"] == "bad_json"


@pytest.mark.parametrize(
    "body",
    [
        b'{"calendar_id": 1, "event_id": 2, "note": "x\\u0000y"}',
        b'{"calendar_id": 1, "event_id": 2, "n\\u0000": 1}',
        b'{"calendar_id": 1, "event_id": 2, "note": "\\ud800"}',
        b'{"calendar_id": 1, "event_id": 2, "note": ["ok", {"a": "\\udfff x"}]}',
    ],
)
def test_json_strings_with_nul_or_unpaired_surrogates_are_400(
    client: FlaskClient, body: bytes
) -> None:
    resp = client.post("/hooks/zap", data=body, headers=ZAP)
    assert problem(resp, 400)["reason"] == "bad_characters"


def test_form_fields_with_nul_are_400_and_newlines_are_kept() -> None:
    with pytest.raises(BadRequest) as exc:
        parse_form(b"calendar_id=1&note=a%00b")
    assert exc.value.reason == "bad_characters"
    assert parse_form(b"note=line+1%0D%0Aline+2")["note"] == "line 1\r\nline 2"
    assert parse_json(b'{"note": "line 1\\r\\nline 2", "pair": "\\ud83d\\ude00"}')["pair"] == (
        "\U0001f600"
    )


def test_nul_in_a_json_note_never_reaches_the_ledger(
    make_app: Callable[..., Flask], ledger: Ledger, database_url: str
) -> None:
    client = make_app(ROUTES, DATABASE_URL=database_url, **ENV).test_client()
    body = b'{"calendar_id": 1, "event_id": 2, "note": "x\\u0000y"}'
    resp = client.post("/hooks/zap", data=body, headers=ZAP)
    assert problem(resp, 400)["reason"] == "bad_characters"


# --- 6. Idempotency keys: control characters and length, one rule for every preset -------------


def hashed(raw: str) -> str:
    return "sha256:" + hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


UNSAFE_KEYS = ["a\x00b", "a\r\nX-Injected: 1", "tab\there", "del\x7f", "nel\x85x", "k\u2028x"]


@pytest.mark.parametrize("raw", UNSAFE_KEYS)
def test_header_keys_with_control_characters_are_hashed_in_every_preset(raw: str) -> None:
    token = AuthConfig(header="X-T", tokens=("t",))
    generic = GenericSource(SourceOptions(auth=token))
    parsed = generic.parse(inbound(b"{}", {"Idempotency-Key": raw}))
    assert parsed.items[0].idempotency_key == hashed(raw)
    zendesk = ZendeskSource(SourceOptions(secrets=("s",)))
    parsed = zendesk.parse(inbound(b"{}", {"X-Zendesk-Webhook-Invocation-Id": raw}))
    assert parsed.items[0].idempotency_key == hashed(raw)
    standard = StandardWebhooksSource(SourceOptions(secrets=(STANDARD_SECRET,)))
    parsed = standard.parse(inbound(b"{}", {"webhook-id": raw}))
    assert parsed.items[0].idempotency_key == hashed(raw)


@pytest.mark.parametrize("raw", ["ev\n1", "ev\x1b[31m", "ev\u2029"])
def test_body_keys_with_control_characters_are_hashed_in_every_preset(raw: str) -> None:
    as_json = json.dumps(raw)
    hubspot = HubSpotSource(SourceOptions(secrets=("s",)))
    parsed = hubspot.parse(inbound(f'[{{"eventId": {as_json}}}]'.encode()))
    assert parsed.items[0].idempotency_key == hashed(raw)
    pipedrive = PipedriveSource(SourceOptions(auth=AuthConfig(basic=(("u", "p"),))))
    body = f'{{"meta": {{"version": "2.0", "id": {as_json}}}, "data": {{}}}}'.encode()
    assert pipedrive.parse(inbound(body)).items[0].idempotency_key == hashed(raw)
    zendesk = ZendeskSource(SourceOptions(secrets=("s",)))
    assert zendesk.parse(inbound(f'{{"id": {as_json}}}'.encode())).items[0].idempotency_key == (
        hashed(raw)
    )


def test_salesforce_notification_id_with_a_newline_is_hashed() -> None:
    source = SalesforceSource(SourceOptions(organization_ids=(ORG,)))
    body = outbound("").replace(b"<Id>04l000000000001AAA</Id>", b"<Id>04l&#10;1</Id>")
    parsed = source.parse(inbound(body, content_type="text/xml"))
    assert parsed.items[0].idempotency_key == hashed("04l\n1")


def test_printable_keys_are_kept_as_sent() -> None:
    generic = GenericSource(SourceOptions(auth=AuthConfig(header="X-T", tokens=("t",))))
    for raw in ["zap-1", "d\u00e9al 42", "k" * 200]:
        parsed = generic.parse(inbound(b"{}", {"Idempotency-Key": raw}))
        assert parsed.items[0].idempotency_key == raw
    parsed = generic.parse(inbound(b"{}", {"Idempotency-Key": "k" * 201}))
    assert parsed.items[0].idempotency_key == hashed("k" * 201)


def test_nul_idempotency_key_is_stored_hashed_and_a_retry_is_replayed(
    make_app: Callable[..., Flask], ledger: Ledger, database_url: str
) -> None:
    client = make_app(ROUTES, DATABASE_URL=database_url, **ENV).test_client()
    body = b'{"calendar_id": 1, "event_id": 2}'
    headers = {**ZAP, "Idempotency-Key": "retry\x00key"}
    first = client.post("/hooks/zap", data=body, headers=headers)
    assert first.status_code == 200, first.get_data(as_text=True)
    again = client.post("/hooks/zap", data=body, headers=headers)
    assert again.status_code == 200, again.get_data(as_text=True)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["delivery_id"] == first.get_json()["delivery_id"]
