"""Shared credential checks: tokens, Basic pairs, body HMACs, timestamp windows, option checks."""

from __future__ import annotations

import base64

import pytest

from bridge.errors import Unauthorized
from bridge.sources.auth import check_auth, check_timestamp, matches_any, validate_auth
from bridge.sources.base import AuthConfig, InboundRequest


def request(headers: dict[str, str]) -> InboundRequest:
    return InboundRequest("POST", "https://b.example/hooks/x", headers, {}, b"{}", "", 1e9)


def basic(user: str, password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def reason_of(auth: AuthConfig, headers: dict[str, str]) -> str | None:
    try:
        check_auth(auth, request(headers))
    except Unauthorized as exc:
        return exc.reason
    return None


def test_header_tokens() -> None:
    auth = AuthConfig(header="X-Bridge-Token", tokens=("first", "s\u00e9cond"))
    assert reason_of(auth, {"x-bridge-token": "first"}) is None
    assert reason_of(auth, {"x-bridge-token": "s\u00e9cond"}) is None  # non-ASCII is fine
    assert reason_of(auth, {"x-bridge-token": "\u00e9"}) == "bad_credentials"
    assert reason_of(auth, {"x-bridge-token": "firs"}) == "bad_credentials"
    assert reason_of(auth, {"authorization": "Bearer first"}) == "missing_header"


def test_bearer_tokens() -> None:
    auth = AuthConfig(bearer=True, tokens=("tok-1", "tok-2"))
    assert reason_of(auth, {"authorization": "Bearer tok-2"}) is None
    assert reason_of(auth, {"authorization": "bearer   tok-1"}) is None
    assert reason_of(auth, {"authorization": "tok-1"}) == "bad_credentials"
    assert reason_of(auth, {"authorization": "Bearer"}) == "bad_credentials"
    assert reason_of(auth, basic("tok-1", "tok-1")) == "bad_credentials"
    assert reason_of(auth, {}) == "missing_header"


def test_basic_pairs() -> None:
    auth = AuthConfig(basic=(("alice", "pw:with:colons"), ("bob", "hunter2")))
    assert reason_of(auth, basic("alice", "pw:with:colons")) is None
    assert reason_of(auth, basic("bob", "hunter2")) is None
    # A user's password is not valid for another user.
    assert reason_of(auth, basic("alice", "hunter2")) == "bad_credentials"
    assert reason_of(auth, basic("carol", "hunter2")) == "bad_credentials"
    assert reason_of(auth, {"authorization": "Basic Ym9i"}) == "bad_credentials"  # "bob", no ':'
    assert reason_of(auth, {"authorization": "Basic %%%"}) == "bad_credentials"
    assert reason_of(auth, {"Authorization": basic("bob", "hunter2")["authorization"]}) is None


def test_auth_config_validation() -> None:
    bad = [
        AuthConfig(),
        AuthConfig(tokens=("t",)),
        AuthConfig(header="X-T"),
        AuthConfig(header="X-T", bearer=True, tokens=("t",)),
        AuthConfig(header="X-T", tokens=("",)),
        AuthConfig(basic=(("user", ""),)),
        AuthConfig(basic=(("us:er", "pw"),)),
    ]
    for auth in bad:
        with pytest.raises(ValueError):
            validate_auth("generic", auth)
    validate_auth("generic", AuthConfig(bearer=True, tokens=("t",), basic=(("u", "p"),)))


def test_timestamp_window_is_inclusive_and_symmetric() -> None:
    check_timestamp(700.0, received_at=1000.0, tolerance=300)
    check_timestamp(1300.0, received_at=1000.0, tolerance=300)
    for ts in (699.9, 1300.1):
        with pytest.raises(Unauthorized) as exc:
            check_timestamp(ts, received_at=1000.0, tolerance=300)
        assert exc.value.reason == "stale_timestamp"


def test_matches_any() -> None:
    assert matches_any([b"a", b"b"], b"b")
    assert not matches_any([b"a", b"b"], b"c")
    assert not matches_any([], b"")
