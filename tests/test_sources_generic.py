"""Generic preset (Zapier, Make, n8n, curl): a token, Basic pair or body HMAC, JSON or form."""

from __future__ import annotations

import hashlib
import json

import pytest

from bridge.demo import payload
from bridge.demo.signers import body_hmac
from bridge.errors import Unauthorized
from bridge.sources import get_preset
from bridge.sources.base import AuthConfig, HmacConfig, InboundRequest, SourceOptions
from bridge.sources.generic import GenericSource

FORM = "application/x-www-form-urlencoded"
SECRET = "n8n-signing-secret"


def request(body: bytes, headers: dict[str, str], content_type: str) -> InboundRequest:
    return InboundRequest(
        "POST", "https://bridge.example.com/hooks/g", headers, {}, body, content_type, 1e9
    )


def signing(encoding: str = "hex", prefix: str = "", *secrets: str) -> GenericSource:
    config = HmacConfig("X-Signature", secrets or (SECRET,), encoding=encoding, prefix=prefix)
    return GenericSource(SourceOptions(hmac=config))


def test_zapier_form_with_a_bearer_token() -> None:
    body = payload("generic", "zapier.form")
    src = GenericSource(SourceOptions(auth=AuthConfig(bearer=True, tokens=("zap-token",))))
    src.verify(request(body, {"authorization": "Bearer zap-token"}, FORM))
    parsed = src.parse(request(body, {}, FORM))
    assert parsed.payload == {
        "calendar_id": "12",
        "event_id": "345",
        "note": "Deal ACME renewal was lost",
        "customer_email": "jane@example.com",
    }
    assert parsed.items[0].idempotency_key == "sha256:" + hashlib.sha256(body).hexdigest()
    with pytest.raises(Unauthorized) as exc:
        src.verify(request(body, {"authorization": "Bearer zap-token2"}, FORM))
    assert exc.value.reason == "bad_credentials"


@pytest.mark.parametrize(("encoding", "prefix"), [("hex", ""), ("hex", "sha256="), ("base64", "")])
def test_n8n_json_signed_with_an_hmac(encoding: str, prefix: str) -> None:
    body = payload("generic", "n8n.json")
    src = signing(encoding, prefix)
    signature = prefix + body_hmac(SECRET, body, encoding)
    hdrs = {"x-signature": signature, "idempotency-key": "n8n-exec-981"}
    src.verify(request(body, hdrs, "application/json"))
    parsed = src.parse(request(body, hdrs, "application/json"))
    assert parsed.payload == json.loads(body)
    assert parsed.items[0].idempotency_key == "n8n-exec-981"
    for position in range(len(body)):
        tampered = bytearray(body)
        tampered[position] ^= 0x01
        with pytest.raises(Unauthorized) as exc:
            src.verify(request(bytes(tampered), hdrs, "application/json"))
        assert exc.value.reason == "signature_mismatch", position


def test_hmac_failures() -> None:
    body = payload("generic", "n8n.json")
    src = signing("hex", "sha256=")
    cases = {
        "missing_header": {},
        "signature_mismatch": {"x-signature": "sha256=" + body_hmac("other", body)},
    }
    for expected, hdrs in cases.items():
        with pytest.raises(Unauthorized) as exc:
            src.verify(request(body, hdrs, "application/json"))
        assert exc.value.reason == expected
    for bad in (body_hmac(SECRET, body), "sha256=zz", "sha1=" + body_hmac(SECRET, body)):
        with pytest.raises(Unauthorized) as exc:
            src.verify(request(body, {"x-signature": bad}, "application/json"))
        assert exc.value.reason == "signature_mismatch"
    # Upper-case hex, a capitalised prefix and a mixed-case header name still match.
    src.verify(
        request(
            body, {"X-SIGNATURE": "SHA256=" + body_hmac(SECRET, body).upper()}, "application/json"
        )
    )


def test_rotated_hmac_secret() -> None:
    body = payload("generic", "n8n.json")
    src = signing("hex", "", "retired", SECRET)
    src.verify(request(body, {"x-signature": body_hmac(SECRET, body)}, "application/json"))


def test_auth_and_hmac_together_both_required() -> None:
    body = payload("generic", "n8n.json")
    config = HmacConfig("X-Signature", (SECRET,))
    auth = AuthConfig(header="X-Bridge-Token", tokens=("tok",))
    src = GenericSource(SourceOptions(auth=auth, hmac=config))
    signed = {"x-signature": body_hmac(SECRET, body)}
    src.verify(request(body, signed | {"x-bridge-token": "tok"}, "application/json"))
    with pytest.raises(Unauthorized):
        src.verify(request(body, signed, "application/json"))
    with pytest.raises(Unauthorized):
        src.verify(request(body, {"x-bridge-token": "tok"}, "application/json"))


def test_options() -> None:
    assert get_preset("generic") is GenericSource
    with pytest.raises(ValueError, match="auth or hmac"):
        GenericSource(SourceOptions())
    with pytest.raises(ValueError, match="encoding"):
        GenericSource(SourceOptions(hmac=HmacConfig("X-Sig", ("s",), encoding="base32")))
    with pytest.raises(ValueError, match="no secret"):
        GenericSource(SourceOptions(hmac=HmacConfig("X-Sig", ())))
    with pytest.raises(ValueError, match="secret_env"):
        GenericSource(SourceOptions(secrets=("s",), hmac=HmacConfig("X-Sig", ("s",))))
