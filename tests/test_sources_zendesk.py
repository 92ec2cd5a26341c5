"""Zendesk preset: timestamp+body signatures, event and trigger bodies, the solved/closed rule."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from jinja2 import ChainableUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from bridge.demo import payload
from bridge.demo.signers import zendesk
from bridge.errors import BadRequest, Unauthorized, UnsupportedMediaType
from bridge.sources import get_preset
from bridge.sources.base import AuthConfig, InboundRequest, SourceOptions
from bridge.sources.zendesk import ZendeskSource

# Zendesk's static test secret: it looks like base64 but is used as-is.
SECRET = "dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ=="
NOW = datetime(2025, 5, 1, 10, 0, 5, tzinfo=UTC).timestamp()
STAMP = "2025-05-01T10:00:00Z"
JINJA = ImmutableSandboxedEnvironment(undefined=ChainableUndefined)


def signed(body: bytes, *, secret: str = SECRET, stamp: str = STAMP) -> dict[str, str]:
    return {
        "x-zendesk-webhook-signature": zendesk(secret, stamp, body),
        "x-zendesk-webhook-signature-timestamp": stamp,
        "x-zendesk-webhook-id": "01F1KRFQ6BG29CNWFR60NK5FNY",
        "x-zendesk-account-id": "12514403",
    }


def request(
    body: bytes, headers: dict[str, str], content_type: str = "application/json"
) -> InboundRequest:
    return InboundRequest(
        "POST", "https://bridge.example.com/hooks/zd", headers, {}, body, content_type, NOW
    )


def source(*secrets: str, auth: AuthConfig | None = None) -> ZendeskSource:
    return ZendeskSource(SourceOptions(secrets=secrets or (SECRET,), auth=auth))


def solved(payload: Any) -> bool:
    compiled = JINJA.compile_expression(ZendeskSource.default_when or "")
    return bool(compiled(payload=payload, event=payload, headers={}, query={}, route="zd"))


def test_event_webhook_verifies_and_parses() -> None:
    body = payload("zendesk", "ticket_status_changed.json")
    headers = signed(body) | {"x-zendesk-webhook-invocation-id": "8350205582"}
    src = source()
    src.verify(request(body, headers))
    parsed = src.parse(request(body, headers))
    assert parsed.payload == json.loads(body)
    assert [i.idempotency_key for i in parsed.items] == ["8350205582"]
    assert solved(parsed.items[0].event)
    # Without the invocation header the event's own id is the key.
    parsed = src.parse(request(body, signed(body)))
    assert parsed.items[0].idempotency_key == "2b24ef10-19d4-4740-93cf-8f98ec4776c0"


def test_trigger_bodies_json_and_form() -> None:
    body = payload("zendesk", "trigger_solved.json")
    src = source()
    src.verify(request(body, signed(body)))
    parsed = src.parse(request(body, signed(body)))
    assert solved(parsed.items[0].event)
    assert parsed.items[0].idempotency_key == "sha256:" + hashlib.sha256(body).hexdigest()
    form = payload("zendesk", "trigger_open.form")
    src.verify(request(form, signed(form), "application/x-www-form-urlencoded"))
    parsed = src.parse(request(form, signed(form), "application/x-www-form-urlencoded"))
    assert parsed.payload == {
        "ticket_id": "35436",
        "status": "Open",
        "requester_email": "jane@example.com",
    }
    assert not solved(parsed.payload)


def test_default_when_cases() -> None:
    assert not solved(json.loads(payload("zendesk", "ticket_priority_changed.json")))
    event = json.loads(payload("zendesk", "ticket_status_changed.json"))
    for current, expected in [("closed", True), ("Closed", True), ("pending", False)]:
        event["event"]["current"] = current
        assert solved(event) is expected
    assert solved({"status": "CLOSED"})
    assert not solved({"status": 4})
    assert not solved({})


def test_every_single_byte_change_of_the_body_is_rejected() -> None:
    body = payload("zendesk", "ticket_status_changed.json")
    headers = signed(body)
    src = source()
    for position in range(len(body)):
        tampered = bytearray(body)
        tampered[position] ^= 0x20
        with pytest.raises(Unauthorized) as exc:
            src.verify(request(bytes(tampered), headers))
        assert exc.value.reason == "signature_mismatch", position


def test_the_timestamp_is_signed_too() -> None:
    body = payload("zendesk", "trigger_solved.json")
    headers = signed(body) | {"x-zendesk-webhook-signature-timestamp": "2025-05-01T10:00:01Z"}
    with pytest.raises(Unauthorized) as exc:
        source().verify(request(body, headers))
    assert exc.value.reason == "signature_mismatch"


def test_wrong_secret_and_rotation() -> None:
    body = payload("zendesk", "trigger_solved.json")
    # The key is the string itself, not its base64 decoding.
    decoded_key = base64.b64decode(SECRET)
    digest = hmac.new(decoded_key, STAMP.encode() + body, hashlib.sha256).digest()
    headers = signed(body) | {"x-zendesk-webhook-signature": base64.b64encode(digest).decode()}
    with pytest.raises(Unauthorized) as exc:
        source().verify(request(body, headers))
    assert exc.value.reason == "signature_mismatch"
    source("retired-secret", SECRET).verify(request(body, signed(body)))
    with pytest.raises(Unauthorized):
        source("retired-secret").verify(request(body, signed(body)))


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2025-05-01T09:54:59Z", "stale_timestamp"),
        ("2025-05-01T10:05:06Z", "stale_timestamp"),
        ("1 May 2025", "bad_timestamp"),
    ],
)
def test_timestamps_outside_the_window(stamp: str, expected: str) -> None:
    body = payload("zendesk", "trigger_solved.json")
    with pytest.raises(Unauthorized) as exc:
        source().verify(request(body, signed(body, stamp=stamp)))
    assert exc.value.reason == expected


def test_offset_timestamps_are_understood() -> None:
    body = payload("zendesk", "trigger_solved.json")
    source().verify(request(body, signed(body, stamp="2025-05-01T12:00:00+02:00")))
    source().verify(request(body, signed(body, stamp="2025-05-01T10:00:00.123Z")))


@pytest.mark.parametrize(
    "drop", ["x-zendesk-webhook-signature", "x-zendesk-webhook-signature-timestamp"]
)
def test_missing_headers(drop: str) -> None:
    body = payload("zendesk", "trigger_solved.json")
    headers = {k: v for k, v in signed(body).items() if k != drop}
    with pytest.raises(Unauthorized) as exc:
        source().verify(request(body, headers))
    assert exc.value.reason == "missing_header"


def test_header_case_variants() -> None:
    body = payload("zendesk", "trigger_solved.json")
    headers = signed(body)
    mixed = {
        "X-Zendesk-Webhook-Signature": headers["x-zendesk-webhook-signature"],
        "X-ZENDESK-WEBHOOK-SIGNATURE-TIMESTAMP": headers["x-zendesk-webhook-signature-timestamp"],
    }
    source().verify(request(body, mixed))


def test_optional_auth_is_checked_in_addition() -> None:
    body = payload("zendesk", "trigger_solved.json")
    src = source(auth=AuthConfig(header="X-Api-Key", tokens=("zd-key",)))
    src.verify(request(body, signed(body) | {"x-api-key": "zd-key"}))
    with pytest.raises(Unauthorized) as exc:
        src.verify(request(body, signed(body) | {"x-api-key": "other"}))
    assert exc.value.reason == "bad_credentials"


@pytest.mark.parametrize(
    ("body", "content_type", "error"),
    [
        (b'{"status": ', "application/json", BadRequest),
        (b'{"status": "\xe9"}', "application/json", BadRequest),
        (b"status=%FF", "application/x-www-form-urlencoded", BadRequest),
        (b"<status>solved</status>", "application/xml", UnsupportedMediaType),
        (b'"solved"', "application/json", BadRequest),
    ],
)
def test_unparseable_bodies(body: bytes, content_type: str, error: type) -> None:
    with pytest.raises(error):
        source().parse(request(body, {}, content_type))


def test_options() -> None:
    assert get_preset("zendesk") is ZendeskSource
    with pytest.raises(ValueError, match="secret_env"):
        ZendeskSource(SourceOptions())
    with pytest.raises(ValueError, match="empty"):
        ZendeskSource(SourceOptions(secrets=("",)))
