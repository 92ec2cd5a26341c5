"""Freshdesk preset: unsigned, so only a configured credential lets a JSON or form body in."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from bridge.demo import payload
from bridge.errors import BadRequest, Unauthorized, UnsupportedMediaType
from bridge.sources import get_preset
from bridge.sources.base import AuthConfig, InboundRequest, SourceOptions
from bridge.sources.freshdesk import FreshdeskSource

FORM = "application/x-www-form-urlencoded"


def request(body: bytes, headers: dict[str, str], content_type: str) -> InboundRequest:
    return InboundRequest(
        "POST", "https://bridge.example.com/hooks/fd", headers, {}, body, content_type, 1e9
    )


def source(auth: AuthConfig) -> FreshdeskSource:
    return FreshdeskSource(SourceOptions(auth=auth))


def test_json_body_with_a_header_token() -> None:
    body = payload("freshdesk", "ticket_resolved.json")
    src = source(AuthConfig(header="X-Webhook-Secret", tokens=("old-token", "fd-token")))
    src.verify(request(body, {"x-webhook-secret": "fd-token"}, "application/json"))
    src.verify(request(body, {"X-Webhook-Secret": "old-token"}, "application/json"))
    parsed = src.parse(request(body, {}, "application/json"))
    assert parsed.payload == json.loads(body)
    assert parsed.items[0].event["freshdesk_webhook"]["ticket_status"] == "Resolved"
    assert parsed.items[0].idempotency_key == "sha256:" + hashlib.sha256(body).hexdigest()
    assert FreshdeskSource.default_when is None


def test_form_body_with_basic_auth_and_idempotency_key() -> None:
    body = payload("freshdesk", "ticket_resolved.form")
    src = source(AuthConfig(basic=(("freshdesk", "pa ss"),)))
    token = base64.b64encode(b"freshdesk:pa ss").decode()
    hdrs = {"authorization": f"Basic {token}", "idempotency-key": "ticket-2044-resolved"}
    src.verify(request(body, hdrs, FORM))
    parsed = src.parse(request(body, hdrs, FORM))
    assert parsed.payload == {
        "ticket_id": "2044",
        "ticket_status": "Resolved",
        "requester_email": "jane@example.com",
        "subject": "Please cancel my demo (edited)",  # a repeated field keeps its last value
    }
    assert parsed.items[0].idempotency_key == "ticket-2044-resolved"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, "missing_header"),
        ({"x-webhook-secret": ""}, "bad_credentials"),
        ({"x-webhook-secret": "fd-token2"}, "bad_credentials"),
        ({"x-webhook-secret": "fd-toke"}, "bad_credentials"),
        ({"x-webhook-secret": "FD-TOKEN"}, "bad_credentials"),
        ({"authorization": "Bearer fd-token"}, "missing_header"),
    ],
)
def test_wrong_or_missing_token(headers: dict[str, str], expected: str) -> None:
    src = source(AuthConfig(header="X-Webhook-Secret", tokens=("fd-token",)))
    with pytest.raises(Unauthorized) as exc:
        src.verify(request(b"{}", headers, "application/json"))
    assert exc.value.reason == expected


@pytest.mark.parametrize(
    ("body", "content_type", "error"),
    [
        (b"<ticket/>", "application/xml", UnsupportedMediaType),
        (b"{}", "text/plain", UnsupportedMediaType),
        (b"{'a': 1}", "application/json", BadRequest),
        (b"a=%E9", FORM, BadRequest),
        (b"a=\xe9", FORM, BadRequest),
        (b"", "application/json", BadRequest),
    ],
)
def test_unparseable_bodies(body: bytes, content_type: str, error: type) -> None:
    src = source(AuthConfig(bearer=True, tokens=("t",)))
    with pytest.raises(error):
        src.parse(request(body, {}, content_type))


def test_options() -> None:
    assert get_preset("freshdesk") is FreshdeskSource
    with pytest.raises(ValueError, match="auth is required"):
        FreshdeskSource(SourceOptions())
    with pytest.raises(ValueError, match="secret_env"):
        FreshdeskSource(SourceOptions(secrets=("s",), auth=AuthConfig(bearer=True, tokens=("t",))))
