"""The preset interface and its shared parsing: content types, bodies, the registry."""

from __future__ import annotations

import hashlib

import pytest
from jinja2 import ChainableUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from bridge.core.limits import bounded_key
from bridge.errors import BadRequest, UnsupportedMediaType
from bridge.sources import PRESETS, get_preset
from bridge.sources.base import (
    AuthConfig,
    HmacConfig,
    InboundRequest,
    SourceOptions,
    body_hash_key,
    get_header,
    is_json_type,
    parse_form,
    parse_json,
)
from bridge.sources.generic import GenericSource

TOKEN_AUTH = AuthConfig(header="X-Bridge-Token", tokens=("t0ken-value",))


def request(
    body: bytes, content_type: str, headers: dict[str, str] | None = None
) -> InboundRequest:
    return InboundRequest(
        "POST", "https://b.example/hooks/x", headers or {}, {}, body, content_type, 1e9
    )


def generic() -> GenericSource:
    return GenericSource(SourceOptions(auth=TOKEN_AUTH))


def test_body_hash_key() -> None:
    assert body_hash_key(b"{}") == "sha256:" + hashlib.sha256(b"{}").hexdigest()
    assert body_hash_key(b"{}") != body_hash_key(b"{} ")


def test_json_parsing() -> None:
    assert parse_json(b'{"a": [1, 2.5, null]}') == {"a": [1, 2.5, None]}
    assert parse_json(b"[1]", allow_array=True) == [1]
    assert parse_json('\ufeff{"bom": true}'.encode()) == {"bom": True}
    for bad in (b"[1]", b'"text"', b"42", b"null", b'{"a": NaN}', b'{"a": Infinity}', b"{"):
        with pytest.raises(BadRequest):
            parse_json(bad)
    with pytest.raises(BadRequest, match="UTF-8"):
        parse_json(b'{"a": "\x80"}')
    with pytest.raises(BadRequest):
        parse_json(b"[" * 200_000 + b"]" * 200_000, allow_array=True)


def test_form_parsing() -> None:
    body = b"a=1&b=&c=x+y%21&a=2&d=%C3%A9t%C3%A9"
    assert parse_form(body) == {"a": "2", "b": "", "c": "x y!", "d": "\u00e9t\u00e9"}
    for bad in (b"a=%FF", b"a=\xff"):
        with pytest.raises(BadRequest):
            parse_form(bad)


def test_content_types() -> None:
    assert is_json_type("application/json")
    assert is_json_type("application/cloudevents+json")
    assert not is_json_type("text/json")
    assert not is_json_type("application/jsonx")
    src = generic()
    assert src.parse(request(b'{"x": 1}', "application/vnd.api+json")).payload == {"x": 1}
    assert src.parse(request(b"x=1", "application/x-www-form-urlencoded")).payload == {"x": "1"}
    for content_type in ("", "text/plain", "multipart/form-data", "text/xml"):
        with pytest.raises(UnsupportedMediaType):
            src.parse(request(b'{"x": 1}', content_type))
    for empty in (b"", b"  \n"):
        with pytest.raises(BadRequest, match="empty"):
            src.parse(request(empty, "application/json"))


def test_idempotency_key_header_and_its_bound() -> None:
    src = generic()
    parsed = src.parse(request(b"{}", "application/json", {"idempotency-key": " zap-1 "}))
    assert parsed.items[0].idempotency_key == "zap-1"
    long_key = "k" * 500
    parsed = src.parse(request(b"{}", "application/json", {"idempotency-key": long_key}))
    assert (
        parsed.items[0].idempotency_key == "sha256:" + hashlib.sha256(long_key.encode()).hexdigest()
    )
    assert bounded_key("short") == "short"
    parsed = src.parse(request(b"{}", "application/json", {"idempotency-key": "   "}))
    assert parsed.items[0].idempotency_key == body_hash_key(b"{}")


def test_header_lookup_ignores_case() -> None:
    req = request(b"", "", {"X-Mixed-Case": "1", "lower": "2"})
    assert get_header(req, "x-mixed-case") == "1"
    assert get_header(req, "LOWER") == "2"
    assert get_header(req, "absent") is None


def test_secrets_never_show_in_reprs() -> None:
    options = SourceOptions(
        secrets=("s3cret-a",),
        auth=AuthConfig(header="X-T", tokens=("s3cret-b",), basic=(("u", "s3cret-c"),)),
        hmac=HmacConfig("X-S", ("s3cret-d",)),
    )
    assert "s3cret" not in repr(options)


def test_registry() -> None:
    assert set(PRESETS) == {
        "hubspot",
        "hubspot-workflow",
        "pipedrive",
        "salesforce",
        "zendesk",
        "freshdesk",
        "standard",
        "generic",
    }
    for name, cls in PRESETS.items():
        assert cls.name == name
        assert get_preset(name) is cls
        assert cls.default_respond in ("sync", "ack")
    with pytest.raises(ValueError, match="known presets: freshdesk, generic"):
        get_preset("stripe")


def test_default_when_expressions_compile_and_tolerate_foreign_shapes() -> None:
    env = ImmutableSandboxedEnvironment(undefined=ChainableUndefined)
    shapes: list[object] = [{}, [], "text", {"event": None, "data": [1], "previous": "x"}]
    for cls in PRESETS.values():
        if cls.default_when is None:
            continue
        compiled = env.compile_expression(cls.default_when)
        for shape in shapes:
            result = compiled(payload=shape, event=shape, headers={}, query={}, route="r")
            assert not result, (cls.name, shape)


def test_tolerance_must_be_positive() -> None:
    with pytest.raises(ValueError, match="tolerance"):
        GenericSource(SourceOptions(auth=TOKEN_AUTH, tolerance=0))
