"""Pipedrive preset: Basic credentials, v1 and v2 event shapes, and the "deal became lost" rule."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from typing import Any

import pytest
from jinja2 import ChainableUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from bridge.demo import payload
from bridge.errors import BadRequest, Unauthorized, UnsupportedMediaType
from bridge.sources import get_preset
from bridge.sources.base import AuthConfig, InboundRequest, SourceOptions
from bridge.sources.pipedrive import PipedriveSource

JINJA = ImmutableSandboxedEnvironment(undefined=ChainableUndefined)
AUTH = AuthConfig(basic=(("pipedrive", "old-password"), ("pipedrive", "s3cr3t:with:colons")))


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"authorization": f"Basic {token}"}


def request(
    body: bytes, headers: dict[str, str], content_type: str = "application/json"
) -> InboundRequest:
    return InboundRequest(
        "POST", "https://bridge.example.com/hooks/pd", headers, {}, body, content_type, 1e9
    )


def source() -> PipedriveSource:
    return PipedriveSource(SourceOptions(auth=AUTH))


def lost(payload: Any) -> bool:
    expr = PipedriveSource.default_when or ""
    compiled = JINJA.compile_expression(expr)
    return bool(compiled(payload=payload, event=payload, headers={}, query={}, route="pd"))


def test_v2_deal_lost() -> None:
    body = payload("pipedrive", "v2_deal_lost.json")
    src = source()
    src.verify(request(body, basic("pipedrive", "s3cr3t:with:colons")))
    parsed = src.parse(request(body, {}))
    assert parsed.payload == json.loads(body)
    assert [i.idempotency_key for i in parsed.items] == ["0f6c2d9e-3b1a-4c5d-8e7f-1a2b3c4d5e6f"]
    assert lost(parsed.items[0].event)


def test_v1_deal_lost() -> None:
    body = payload("pipedrive", "v1_deal_lost.json")
    parsed = source().parse(request(body, {}))
    # v1 has no event id: webhook + object id + event time in microseconds.
    assert parsed.items[0].idempotency_key == "77:42:1727447128123456"
    assert lost(parsed.items[0].event)


def test_default_when_is_false_for_irrelevant_changes() -> None:
    # A lost deal edited again: `previous` does not hold `status`.
    assert not lost(json.loads(payload("pipedrive", "v2_lost_reason_edited.json")))
    v2 = json.loads(payload("pipedrive", "v2_deal_lost.json"))
    won = copy.deepcopy(v2)
    won["data"]["status"] = "won"
    assert not lost(won)
    already = copy.deepcopy(v2)
    already["previous"]["status"] = "lost"
    assert not lost(already)
    created = copy.deepcopy(v2)
    created["previous"] = None
    created["meta"]["action"] = "create"
    assert not lost(created)
    person = copy.deepcopy(v2)
    person["meta"]["entity"] = "person"
    assert not lost(person)
    v1 = json.loads(payload("pipedrive", "v1_deal_lost.json"))
    reopened = copy.deepcopy(v1)
    reopened["current"]["status"], reopened["previous"]["status"] = "open", "lost"
    assert not lost(reopened)
    v1_again = copy.deepcopy(v1)
    v1_again["previous"]["status"] = "lost"
    assert not lost(v1_again)


def test_key_falls_back_to_the_body_hash() -> None:
    body = b'{"meta": {}, "data": {"status": "lost"}, "previous": {"status": "open"}}'
    key = source().parse(request(body, {})).items[0].idempotency_key
    assert key == "sha256:" + hashlib.sha256(body).hexdigest()


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, "missing_header"),
        (basic("pipedrive", "wrong"), "bad_credentials"),
        (basic("someone", "s3cr3t:with:colons"), "bad_credentials"),
        ({"authorization": "Bearer s3cr3t"}, "bad_credentials"),
        ({"authorization": "Basic !!!"}, "bad_credentials"),
    ],
)
def test_bad_or_missing_credentials(headers: dict[str, str], expected: str) -> None:
    with pytest.raises(Unauthorized) as exc:
        source().verify(request(payload("pipedrive", "v2_deal_lost.json"), headers))
    assert exc.value.reason == expected


def test_rotated_password_and_header_case() -> None:
    src = source()
    body = payload("pipedrive", "v2_deal_lost.json")
    src.verify(request(body, basic("pipedrive", "old-password")))
    value = basic("pipedrive", "old-password")["authorization"]
    src.verify(request(body, {"Authorization": value}))
    src.verify(request(body, {"authorization": value.replace("Basic", "basic")}))


@pytest.mark.parametrize(
    ("body", "content_type", "error"),
    [
        (b"{", "application/json", BadRequest),
        (b'["meta"]', "application/json", BadRequest),
        (b'{"title": "\xc3\x28"}', "application/json", BadRequest),
        (b"meta=1", "application/x-www-form-urlencoded", UnsupportedMediaType),
    ],
)
def test_unparseable_bodies(body: bytes, content_type: str, error: type) -> None:
    with pytest.raises(error):
        source().parse(request(body, {}, content_type))


def test_options() -> None:
    assert get_preset("pipedrive") is PipedriveSource
    with pytest.raises(ValueError, match="basic"):
        PipedriveSource(SourceOptions())
    with pytest.raises(ValueError, match="basic"):
        PipedriveSource(SourceOptions(auth=AuthConfig(header="X-Token", tokens=("t",))))
    with pytest.raises(ValueError, match="secret_env"):
        PipedriveSource(SourceOptions(auth=AUTH, secrets=("x",)))
