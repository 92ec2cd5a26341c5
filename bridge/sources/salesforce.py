"""Salesforce Outbound Messages: SOAP `notifications` checked by OrganizationId, then Acked.

https://developer.salesforce.com/docs/platform/api/guide/sforce-api-om-outboundmessaging-wsdl.html
"""

from __future__ import annotations

import io
import re
from typing import Any
from xml.etree.ElementTree import Element, ParseError
from xml.sax.saxutils import escape

from defusedxml import ElementTree as SafeElementTree
from defusedxml.common import DefusedXmlException

from bridge.core.limits import bounded_key
from bridge.errors import BadRequest, Unauthorized
from bridge.sources.auth import check_auth, reject_unused
from bridge.sources.base import (
    InboundRequest,
    Item,
    Parsed,
    Source,
    SourceOptions,
    body_hash_key,
)

XSI = "{http://www.w3.org/2001/XMLSchema-instance}"
XML_TYPES = ("text/xml", "application/xml", "application/soap+xml")
MAX_NOTIFICATIONS = 100  # the WSDL allows 1 to 100 Notification elements per message
# Envelope, Body, notifications, Notification, sObject, field: 6 levels, a few more for related
# records. The bound also keeps the recursive walk in `_record` far from the recursion limit.
MAX_XML_DEPTH = 32
# 100 notifications of a few hundred fields each fit; the bytes are bounded by BRIDGE_MAX_BODY.
MAX_XML_ELEMENTS = 100_000
_ORG_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")

_ENVELOPE = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
    "<soapenv:Body>{}</soapenv:Body></soapenv:Envelope>"
)
ACK = _ENVELOPE.format(
    '<notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">'
    "<Ack>true</Ack></notificationsResponse>"
).encode()


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _child(element: Element, name: str) -> Element | None:
    for child in element:
        if _local(child.tag) == name:
            return child
    return None


def _child_text(element: Element, name: str) -> str | None:
    child = _child(element, name)
    return None if child is None else (child.text or "").strip()


def _value(element: Element) -> Any:
    if element.get(XSI + "nil") in ("true", "1"):
        return None
    if len(element):
        return _record(element)  # a related record's fields
    return element.text or ""


def _record(element: Element) -> dict[str, Any]:
    """An sObject as a dict: `type` from xsi:type, then each field by its local name."""
    xsi_type = element.get(XSI + "type")
    record: dict[str, Any] = {"type": xsi_type.rpartition(":")[2] if xsi_type else None}
    for child in element:
        record[_local(child.tag)] = _value(child)
    return record


def _org_allowed(org_id: str, allowed: tuple[str, ...]) -> bool:
    """Same length: equal. A configured 15-character id: the first 15 of an 18-character one.

    Messages carry the 18-character id (the case-sensitive 15 plus a 3-character suffix); a
    configured 18-character id never matches a 15-character one, and nothing else is a prefix.
    """
    if not _ORG_ID.fullmatch(org_id):
        return False
    return any(
        org_id == want or (len(want) == 15 and len(org_id) == 18 and org_id[:15] == want)
        for want in allowed
    )


def parse_bounded(body: bytes) -> Element:
    """The XML document, refused while it is read once it nests or grows past the bounds."""
    root: Element | None = None
    depth = elements = 0
    # forbid_dtd: an outbound message never has a DTD, and refusing it stops entity expansion
    # (billion laughs) and external entities before they are read.
    events = SafeElementTree.iterparse(io.BytesIO(body), ("start", "end"), forbid_dtd=True)
    for event, element in events:
        if event == "end":
            depth -= 1
            continue
        root = element if root is None else root
        depth += 1
        elements += 1
        if depth > MAX_XML_DEPTH:
            raise BadRequest(
                f"the XML body nests deeper than {MAX_XML_DEPTH} levels", reason="xml_too_deep"
            )
        if elements > MAX_XML_ELEMENTS:
            raise BadRequest(
                f"the XML body holds more than {MAX_XML_ELEMENTS} elements", reason="xml_too_large"
            )
    if root is None:  # iterparse raises on an empty document; this is for the type checker
        raise BadRequest("the request body holds no XML element")
    return root


class SalesforceSource(Source):
    name = "salesforce"
    default_when = "event.sObject.StageName == 'Closed Lost'"
    # Salesforce holds the whole message in its queue until it gets <Ack>true</Ack> and backs
    # off for up to 2 h after a slow answer; ack once the ledger has every notification.
    default_respond = "ack"

    def __init__(self, options: SourceOptions) -> None:
        super().__init__(options)
        reject_unused(self.name, options, auth=True, organization_ids=True)
        # There is no signature: the OrganizationId (over TLS) is Salesforce's own check.
        if not options.organization_ids:
            raise ValueError(f"{self.name}: organization_ids is required")
        for org_id in options.organization_ids:
            if not _ORG_ID.fullmatch(org_id):
                raise ValueError(
                    f"{self.name}: {org_id!r} is not a 15 or 18 character organization id"
                )

    def verify(self, request: InboundRequest) -> None:
        if self.options.auth is not None:
            check_auth(self.options.auth, request)
        org_id = _child_text(self._notifications(request), "OrganizationId")
        if not org_id:
            raise Unauthorized(
                "the message has no OrganizationId", reason="organization_not_allowed"
            )
        if not _ORG_ID.fullmatch(org_id):
            # Not echoed: it is the sender's text, and may hold anything.
            raise Unauthorized(
                "the OrganizationId is not a 15 or 18 character id",
                reason="organization_not_allowed",
            )
        if not _org_allowed(org_id, self.options.organization_ids):
            raise Unauthorized(
                f"organization {org_id} may not post to this route",
                reason="organization_not_allowed",
            )

    def parse(self, request: InboundRequest) -> Parsed:
        root = self._notifications(request)
        notifications = [child for child in root if _local(child.tag) == "Notification"]
        if not notifications:
            raise BadRequest("the outbound message holds no Notification")
        if len(notifications) > MAX_NOTIFICATIONS:
            raise BadRequest(
                f"the outbound message holds {len(notifications)} notifications; "
                f"at most {MAX_NOTIFICATIONS} are allowed"
            )
        events: list[dict[str, Any]] = []
        items: list[Item] = []
        seen: set[str] = set()
        for index, notification in enumerate(notifications):
            notification_id = _child_text(notification, "Id")
            sobject = _child(notification, "sObject")
            event = {
                "Id": notification_id,
                "sObject": _record(sobject) if sobject is not None else {"type": None},
            }
            events.append(event)
            if notification_id:
                key = bounded_key(notification_id)
            else:
                key = f"{body_hash_key(request.body)}#{index}"
            if key not in seen:
                seen.add(key)
                items.append(Item(event, key))
        # SessionId is left out on purpose: it is a live Salesforce session and must not be stored.
        payload = {
            "OrganizationId": _child_text(root, "OrganizationId"),
            "ActionId": _child_text(root, "ActionId"),
            "notifications": events,
        }
        return Parsed(payload=payload, items=items)

    def acknowledge(self, status: int, body: dict[str, Any]) -> tuple[bytes, int, str] | None:
        if 200 <= status < 300:
            return ACK, 200, "text/xml"
        code = "soapenv:Client" if status < 500 else "soapenv:Server"
        message = str(body.get("detail") or body.get("title") or f"HTTP {status}")
        fault = f"<soapenv:Fault><faultcode>{code}</faultcode><faultstring>{escape(message)}"
        fault += "</faultstring></soapenv:Fault>"
        return _ENVELOPE.format(fault).encode(), status, "text/xml"

    def _notifications(self, request: InboundRequest) -> Element:
        if request.content_type not in XML_TYPES:
            self.unsupported(request, "text/xml (SOAP)")
        if not request.body.strip():
            raise BadRequest("the request body is empty")
        try:
            root = parse_bounded(request.body)
        except DefusedXmlException as exc:
            raise BadRequest("XML entities are not allowed", reason="xml_entities") from exc
        except ParseError as exc:
            raise BadRequest(f"the request body is not well-formed XML: {exc}") from exc
        for element in root.iter():
            if _local(element.tag) == "notifications":
                return element
        raise BadRequest("the body is not a Salesforce outbound message (no notifications)")
