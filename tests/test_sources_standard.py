"""Standard Webhooks preset: the reference libraries' vectors, rotation, and the time window."""

from __future__ import annotations

import base64
import json

import pytest

from bridge.demo import payload_path
from bridge.demo.signers import standard
from bridge.errors import BadRequest, Unauthorized, UnsupportedMediaType
from bridge.sources import get_preset
from bridge.sources.base import InboundRequest, SourceOptions
from bridge.sources.standard import StandardWebhooksSource

FIXTURE = payload_path("standard", "meeting_canceled.json")

# The test vector of the Standard Webhooks reference libraries' own tests.
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TS = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
NEGATIVES = [
    "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=",
    "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
    "v1,dawfeoifkpqwoekfpqoekf",
    "v1,",
]

SECRET = "whsec_" + base64.b64encode(bytes(range(7, 39))).decode()
NOW = 1_746_093_600.0


def headers(msg_id: str, timestamp: int | str, signature: str) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }


def request(
    body: bytes,
    hdrs: dict[str, str],
    *,
    received_at: float = NOW,
    content_type: str = "application/json",
) -> InboundRequest:
    return InboundRequest(
        "POST", "https://bridge.example.com/hooks/std", hdrs, {}, body, content_type, received_at
    )


def source(*secrets: str, tolerance: float = 300.0) -> StandardWebhooksSource:
    return StandardWebhooksSource(SourceOptions(secrets=secrets or (SECRET,), tolerance=tolerance))


def fresh(body: bytes, *, secret: str = SECRET, msg_id: str = "msg_2KWPBgLlAfx") -> dict[str, str]:
    return headers(msg_id, int(NOW), standard(secret, msg_id, int(NOW), body))


def test_reference_vector() -> None:
    assert standard(VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY) == VECTOR_SIG
    hdrs = headers(VECTOR_ID, VECTOR_TS, VECTOR_SIG)
    for secret in (VECTOR_SECRET, VECTOR_SECRET.removeprefix("whsec_")):
        src = source(secret)
        src.verify(request(VECTOR_BODY, hdrs, received_at=VECTOR_TS + 10))
        parsed = src.parse(request(VECTOR_BODY, hdrs, received_at=VECTOR_TS + 10))
        assert parsed.payload == {"test": 2432232314}
        assert [i.idempotency_key for i in parsed.items] == [VECTOR_ID]


@pytest.mark.parametrize("signature", NEGATIVES)
def test_reference_negative_signatures(signature: str) -> None:
    hdrs = headers(VECTOR_ID, VECTOR_TS, signature)
    with pytest.raises(Unauthorized) as exc:
        source(VECTOR_SECRET).verify(request(VECTOR_BODY, hdrs, received_at=VECTOR_TS))
    assert exc.value.reason == "signature_mismatch"


def test_signature_lists() -> None:
    good = VECTOR_SIG
    wrong = NEGATIVES[1]
    src = source(VECTOR_SECRET)

    def check(value: str) -> None:
        hdrs = headers(VECTOR_ID, VECTOR_TS, value)
        src.verify(request(VECTOR_BODY, hdrs, received_at=VECTOR_TS))

    # A v2 entry holding the right bytes must be ignored.
    with pytest.raises(Unauthorized):
        check(f"{wrong} v2,{good.partition(',')[2]}")
    check(f"{wrong} {good}")
    check(f"v1a,c2lnbmVk {NEGATIVES[2]} v1, {good}")


@pytest.mark.parametrize("skew", [-301, 301])
def test_stale_and_future_timestamps(skew: int) -> None:
    body = FIXTURE.read_bytes()
    ts = int(NOW) + skew
    hdrs = headers("msg_1", ts, standard(SECRET, "msg_1", ts, body))
    with pytest.raises(Unauthorized) as exc:
        source().verify(request(body, hdrs))
    assert exc.value.reason == "stale_timestamp"
    # A wider configured tolerance is honoured (the library alone would fix it at 5 minutes).
    source(tolerance=600).verify(request(body, hdrs))


def test_realistic_payload_and_tampering() -> None:
    body = FIXTURE.read_bytes()
    hdrs = fresh(body)
    src = source()
    src.verify(request(body, hdrs))
    parsed = src.parse(request(body, hdrs))
    assert parsed.payload == json.loads(body)
    assert parsed.items[0].idempotency_key == "msg_2KWPBgLlAfx"
    assert StandardWebhooksSource.default_when is None
    for position in range(len(body)):
        tampered = bytearray(body)
        tampered[position] ^= 0x01
        with pytest.raises(Unauthorized) as exc:
            src.verify(request(bytes(tampered), hdrs))
        assert exc.value.reason == "signature_mismatch", position


def test_signed_id_and_timestamp_cannot_be_swapped() -> None:
    body = FIXTURE.read_bytes()
    hdrs = fresh(body) | {"webhook-id": "msg_other"}
    with pytest.raises(Unauthorized) as exc:
        source().verify(request(body, hdrs))
    assert exc.value.reason == "signature_mismatch"


def test_wrong_and_rotated_secrets() -> None:
    body = FIXTURE.read_bytes()
    other = "whsec_" + base64.b64encode(b"another-secret-of-32-bytes-long!").decode()
    with pytest.raises(Unauthorized) as exc:
        source(other).verify(request(body, fresh(body)))
    assert exc.value.reason == "signature_mismatch"
    source(other, SECRET).verify(request(body, fresh(body)))


@pytest.mark.parametrize("drop", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_headers(drop: str) -> None:
    body = FIXTURE.read_bytes()
    hdrs = {k: v for k, v in fresh(body).items() if k != drop}
    with pytest.raises(Unauthorized) as exc:
        source().verify(request(body, hdrs))
    assert exc.value.reason == "missing_header"


def test_header_case_variants_and_bad_timestamp() -> None:
    body = FIXTURE.read_bytes()
    source().verify(request(body, {k.title(): v for k, v in fresh(body).items()}))
    source().verify(request(body, {k.upper(): v for k, v in fresh(body).items()}))
    for bad in ("1746093600.5", "soon", "1e9"):
        with pytest.raises(Unauthorized) as exc:
            source().verify(request(body, fresh(body) | {"webhook-timestamp": bad}))
        assert exc.value.reason == "bad_timestamp"


def test_body_that_is_not_utf8() -> None:
    body = b'{"type": "\xff"}'
    with pytest.raises(Unauthorized) as exc:
        source().verify(request(body, fresh(body)))
    assert exc.value.reason == "signature_mismatch"
    with pytest.raises(BadRequest):
        source().parse(request(body, fresh(body)))


@pytest.mark.parametrize(
    ("body", "content_type", "error"),
    [
        (b"{", "application/json", BadRequest),
        (b'{"a": NaN}', "application/json", BadRequest),
        (b"a=1", "application/x-www-form-urlencoded", UnsupportedMediaType),
        (b"{}", "", UnsupportedMediaType),
    ],
)
def test_unparseable_bodies(body: bytes, content_type: str, error: type) -> None:
    with pytest.raises(error):
        source().parse(request(body, fresh(body), content_type=content_type))


def test_options() -> None:
    assert get_preset("standard") is StandardWebhooksSource
    with pytest.raises(ValueError, match="secret_env"):
        StandardWebhooksSource(SourceOptions())
    for bad in ("whsec_not base64!", "whsec_", "whsec_@@@@"):
        with pytest.raises(ValueError, match="secret 1"):
            StandardWebhooksSource(SourceOptions(secrets=(bad,)))
