"""HubSpot presets: published signature vectors, signed batches, and the workflow action."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import pytest
from jinja2 import ChainableUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from bridge.demo import payload
from bridge.demo.signers import hubspot_v1, hubspot_v2, hubspot_v3, hubspot_v3_headers
from bridge.errors import BadRequest, Unauthorized, UnsupportedMediaType
from bridge.sources import get_preset
from bridge.sources.base import AuthConfig, InboundRequest, SourceOptions
from bridge.sources.hubspot import HubSpotSource, HubSpotWorkflowSource

DOC_SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
SECRET = "0f3e8c2a-5b7d-4e1f-9a6c-3d2b1e0f9a8c"
URL = "https://bridge.example.com/hooks/hubspot-deal-lost?portal=62515&tag=a%3Ab%2Fc"
NOW = 1_717_000_100.0
JINJA = ImmutableSandboxedEnvironment(undefined=ChainableUndefined)


def request(
    body: bytes,
    headers: dict[str, str],
    *,
    method: str = "POST",
    url: str = URL,
    content_type: str = "application/json",
    received_at: float = NOW,
) -> InboundRequest:
    return InboundRequest(
        method=method,
        url=url,
        headers={k.lower(): v for k, v in headers.items()},
        query={},
        body=body,
        content_type=content_type,
        received_at=received_at,
    )


def when(expr: str, payload: Any, event: Any) -> bool:
    compiled = JINJA.compile_expression(expr)
    return bool(compiled(payload=payload, event=event, headers={}, query={}, route="r"))


def v3_headers(body: bytes, *, secret: str = SECRET, at: float = NOW) -> dict[str, str]:
    return hubspot_v3_headers(secret, URL, body, at=at)


def app(*secrets: str, tolerance: float = 300.0) -> HubSpotSource:
    return HubSpotSource(SourceOptions(secrets=secrets or (SECRET,), tolerance=tolerance))


def reason(exc: pytest.ExceptionInfo[Unauthorized]) -> str | None:
    return exc.value.reason


# --- the examples HubSpot publishes in its signature documentation ----------------------------


def test_v1_doc_example_verifies_and_parses() -> None:
    body = (
        b'[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,'
        b'"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,'
        b'"changeSource":"CRM","changeFlag":"NEW","appId":54321}]'
    )
    expected = "232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de"
    assert hubspot_v1(DOC_SECRET, body) == expected
    headers = {"X-HubSpot-Signature": expected, "X-HubSpot-Signature-Version": "v1"}
    source = app(DOC_SECRET)
    source.verify(request(body, headers))
    parsed = source.parse(request(body, headers))
    assert [item.idempotency_key for item in parsed.items] == ["1"]
    assert parsed.items[0].event["subscriptionType"] == "contact.creation"


def test_v2_doc_get_example_verifies() -> None:
    expected = "eee2dddcc73c94d699f5e395f4b9d454a069a6855fbfa152e91e88823087200e"
    uri = "https://www.example.com/webhook_uri"
    assert hubspot_v2(DOC_SECRET, "GET", uri, b"") == expected
    headers = {"X-HubSpot-Signature": expected, "X-HubSpot-Signature-Version": "v2"}
    for source in (app(DOC_SECRET), HubSpotWorkflowSource(SourceOptions(secrets=(DOC_SECRET,)))):
        source.verify(request(b"", headers, method="GET", url=uri))


SDK_BODY = b"{'example_field':'example_value'}"
SDK_URL = "https://www.example.com/webhook_uri"


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("v1", "69fc6631a867edd4f9e9e627fc5c1148e3fbdd8b21837b6d2b8901c1fa57f750"),
        ("v2", "4fe4e3a7d3cf09db53be39d0a58130e2aaba074ec123a9e355b876a689a1c383"),
    ],
)
def test_sdk_v1_v2_vectors(version: str, expected: str) -> None:
    mine = hubspot_v1(DOC_SECRET, SDK_BODY) if version == "v1" else None
    mine = mine or hubspot_v2(DOC_SECRET, "POST", SDK_URL, SDK_BODY)
    assert mine == expected
    headers = {"X-HubSpot-Signature": expected, "X-HubSpot-Signature-Version": version}
    app(DOC_SECRET).verify(request(SDK_BODY, headers, url=SDK_URL))
    # Legacy signatures carry no timestamp: any receive time is fine.
    app(DOC_SECRET).verify(request(SDK_BODY, headers, url=SDK_URL, received_at=time.time()))


def test_sdk_v3_vector_signing_and_freshness() -> None:
    expected = "HPW73RUtKmcYoEDADG0s6MmGFWUzWJKAW07r8RDgcQw="
    assert hubspot_v3(DOC_SECRET, "POST", SDK_URL, SDK_BODY, "15000000") == expected
    headers = {"X-HubSpot-Signature-v3": expected, "X-HubSpot-Request-Timestamp": "15000000"}
    # Signed at 15000000 ms = 15000 s: valid when received near that moment...
    app(DOC_SECRET).verify(request(SDK_BODY, headers, url=SDK_URL, received_at=15_010.0))
    # ...and stale today.
    with pytest.raises(Unauthorized) as exc:
        app(DOC_SECRET).verify(request(SDK_BODY, headers, url=SDK_URL, received_at=time.time()))
    assert reason(exc) == "stale_timestamp"


# --- a realistic signed batch -----------------------------------------------------------------


def test_signed_batch_splits_into_events_and_collapses_duplicates() -> None:
    body = payload("hubspot", "deal_batch.json")
    source = app()
    source.verify(request(body, v3_headers(body)))
    parsed = source.parse(request(body, v3_headers(body)))
    assert parsed.payload == json.loads(body)
    assert len(parsed.payload) == 4
    # The fourth event repeats the first eventId (a retry inside one batch): first one wins.
    assert [item.idempotency_key for item in parsed.items] == [
        "3816279340",
        "3816279341",
        "3816279342",
    ]
    assert parsed.items[0].event["attemptNumber"] == 0
    relevant = [when(HubSpotSource.default_when or "", body, i.event) for i in parsed.items]
    assert relevant == [True, False, False]
    assert HubSpotSource.default_respond == "ack"


def test_v3_accepts_the_undecoded_uri_as_the_sdk_signs_it() -> None:
    body = payload("hubspot", "deal_batch.json")
    timestamp = str(int(NOW * 1000))
    headers = {
        "X-HubSpot-Signature-v3": hubspot_v3(SECRET, "POST", URL, body, timestamp),
        "X-HubSpot-Request-Timestamp": timestamp,
    }
    app().verify(request(body, headers))


def test_v3_signature_binds_the_url() -> None:
    body = payload("hubspot", "deal_batch.json")
    other = URL.replace("hubspot-deal-lost", "other-route")
    with pytest.raises(Unauthorized) as exc:
        app().verify(request(body, v3_headers(body), url=other))
    assert reason(exc) == "signature_mismatch"


@pytest.mark.parametrize("version", ["v1", "v2", "v3"])
def test_every_single_byte_change_of_the_body_is_rejected(version: str) -> None:
    body = payload("hubspot", "deal_batch.json")
    if version == "v3":
        headers = v3_headers(body)
    else:
        sig = hubspot_v1(SECRET, body) if version == "v1" else hubspot_v2(SECRET, "POST", URL, body)
        headers = {"X-HubSpot-Signature": sig, "X-HubSpot-Signature-Version": version}
    source = app()
    source.verify(request(body, headers))
    for position in range(len(body)):
        tampered = bytearray(body)
        tampered[position] ^= 0x01
        with pytest.raises(Unauthorized) as exc:
            source.verify(request(bytes(tampered), headers))
        assert reason(exc) == "signature_mismatch", position


@pytest.mark.parametrize("version", ["v1", "v2", "v3"])
def test_wrong_secret_is_rejected(version: str) -> None:
    body = payload("hubspot", "deal_batch.json")
    wrong = "not-the-client-secret"
    if version == "v3":
        headers = v3_headers(body, secret=wrong)
    else:
        sig = hubspot_v1(wrong, body) if version == "v1" else hubspot_v2(wrong, "POST", URL, body)
        headers = {"X-HubSpot-Signature": sig, "X-HubSpot-Signature-Version": version}
    with pytest.raises(Unauthorized) as exc:
        app().verify(request(body, headers))
    assert reason(exc) == "signature_mismatch"


@pytest.mark.parametrize("skew", [-301.0, 301.0])
def test_stale_and_future_timestamps_are_rejected(skew: float) -> None:
    body = payload("hubspot", "deal_batch.json")
    with pytest.raises(Unauthorized) as exc:
        app().verify(request(body, v3_headers(body, at=NOW + skew)))
    assert reason(exc) == "stale_timestamp"
    # Within the window either way is fine, and the window follows `tolerance`.
    app().verify(request(body, v3_headers(body, at=NOW + skew * 0.99)))
    app(tolerance=600).verify(request(body, v3_headers(body, at=NOW + skew)))


def test_unparseable_timestamp_is_rejected() -> None:
    body = b"[]"
    headers = v3_headers(body) | {"X-HubSpot-Request-Timestamp": "yesterday"}
    with pytest.raises(Unauthorized) as exc:
        app().verify(request(body, headers))
    assert reason(exc) == "bad_timestamp"


@pytest.mark.parametrize(
    ("drop", "expected"),
    [
        ("X-HubSpot-Request-Timestamp", "missing_header"),
        ("X-HubSpot-Signature-v3", "missing_header"),
    ],
)
def test_missing_headers(drop: str, expected: str) -> None:
    body = payload("hubspot", "deal_batch.json")
    headers = {k: v for k, v in v3_headers(body).items() if k != drop}
    with pytest.raises(Unauthorized) as exc:
        app().verify(request(body, headers))
    assert reason(exc) == expected


def test_legacy_signature_needs_a_known_version() -> None:
    body = b"[]"
    with pytest.raises(Unauthorized) as exc:
        app().verify(request(body, {"X-HubSpot-Signature": hubspot_v1(SECRET, body)}))
    assert reason(exc) == "missing_header"
    headers = {
        "X-HubSpot-Signature": hubspot_v1(SECRET, body),
        "X-HubSpot-Signature-Version": "v9",
    }
    with pytest.raises(Unauthorized) as exc:
        app().verify(request(body, headers))
    assert reason(exc) == "unsupported_version"


def test_header_names_are_case_insensitive() -> None:
    body = payload("hubspot", "deal_batch.json")
    headers = v3_headers(body)
    variants = [
        {"X-HubSpot-Signature-V3": headers["X-HubSpot-Signature-v3"]},
        {"x-hubspot-signature-v3": headers["X-HubSpot-Signature-v3"]},
        {"X-HUBSPOT-SIGNATURE-V3": headers["X-HubSpot-Signature-v3"]},
    ]
    for variant in variants:
        variant["X-Hubspot-Request-Timestamp"] = headers["X-HubSpot-Request-Timestamp"]
        # Also as the web layer might hand them over without lower-casing.
        raw = InboundRequest("POST", URL, variant, {}, body, "application/json", NOW)
        app().verify(raw)
        app().verify(request(body, variant))


def test_rotated_secret_second_in_the_list_works() -> None:
    body = payload("hubspot", "deal_batch.json")
    app("old-secret-being-retired", SECRET).verify(request(body, v3_headers(body)))
    legacy = {
        "X-HubSpot-Signature": hubspot_v1(SECRET, body),
        "X-HubSpot-Signature-Version": "v1",
    }
    app("old-secret-being-retired", SECRET).verify(request(body, legacy))


def test_event_without_event_id_gets_a_body_hash_key() -> None:
    body = b'[{"objectId": 1}, {"objectId": 2}]'
    keys = [i.idempotency_key for i in app().parse(request(body, {})).items]
    digest = hashlib.sha256(body).hexdigest()
    assert keys == [f"sha256:{digest}#0", f"sha256:{digest}#1"]


@pytest.mark.parametrize(
    ("body", "content_type", "error"),
    [
        (b'{"eventId": 1}', "application/json", BadRequest),
        (b"[1, 2]", "application/json", BadRequest),
        (b"[{", "application/json", BadRequest),
        (b'[{"propertyValue": "\xff"}]', "application/json", BadRequest),
        (b"eventId=1", "application/x-www-form-urlencoded", UnsupportedMediaType),
        (b"[]", "text/plain", UnsupportedMediaType),
    ],
)
def test_bodies_that_cannot_be_parsed(body: bytes, content_type: str, error: type) -> None:
    with pytest.raises(error):
        app().parse(request(body, {}, content_type=content_type))


def test_options_that_cannot_work_are_refused() -> None:
    with pytest.raises(ValueError, match="secret_env"):
        HubSpotSource(SourceOptions())
    with pytest.raises(ValueError, match="organization_ids"):
        HubSpotSource(SourceOptions(secrets=(SECRET,), organization_ids=("00D000000000062",)))
    with pytest.raises(ValueError, match=r"secret_env .*or auth"):
        HubSpotWorkflowSource(SourceOptions())
    assert get_preset("hubspot") is HubSpotSource
    assert get_preset("hubspot-workflow") is HubSpotWorkflowSource


# --- workflow "Send a webhook" ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["hubspot-workflow/flat.json", "hubspot-workflow/legacy.json"])
def test_workflow_signed_body_passes_through_unchanged(name: str) -> None:
    body = payload(*name.split("/"))
    source = HubSpotWorkflowSource(SourceOptions(secrets=(SECRET,)))
    headers = {
        "X-HubSpot-Signature": hubspot_v2(SECRET, "POST", URL, body),
        "X-HubSpot-Signature-Version": "v2",
    }
    source.verify(request(body, headers))
    parsed = source.parse(request(body, headers))
    assert parsed.payload == json.loads(body)
    assert len(parsed.items) == 1
    assert parsed.items[0].event is parsed.payload
    assert parsed.items[0].idempotency_key == "sha256:" + hashlib.sha256(body).hexdigest()
    assert HubSpotWorkflowSource.default_when is None
    route_when = (
        "payload.dealstage == 'closedlost' or payload.properties.dealstage.value == 'closedlost'"
    )
    assert when(route_when, parsed.payload, parsed.payload)


def test_workflow_idempotency_key_header_wins() -> None:
    body = payload("hubspot-workflow", "flat.json")
    source = HubSpotWorkflowSource(SourceOptions(secrets=(SECRET,)))
    parsed = source.parse(request(body, {"Idempotency-Key": "deal-9876543210-closedlost"}))
    assert parsed.items[0].idempotency_key == "deal-9876543210-closedlost"


def test_workflow_api_key_when_unsigned() -> None:
    body = payload("hubspot-workflow", "flat.json")
    auth = AuthConfig(tokens=("hs-wf-token-1", "hs-wf-token-2"), bearer=True)
    source = HubSpotWorkflowSource(SourceOptions(auth=auth))
    source.verify(request(body, {"Authorization": "Bearer hs-wf-token-2"}))
    with pytest.raises(Unauthorized) as exc:
        source.verify(request(body, {"Authorization": "Bearer nope"}))
    assert reason(exc) == "bad_credentials"
    with pytest.raises(Unauthorized) as exc:
        source.verify(request(body, {}))
    assert reason(exc) == "missing_header"


def test_workflow_with_both_uses_the_signature_when_present() -> None:
    body = payload("hubspot-workflow", "flat.json")
    auth = AuthConfig(header="X-Bridge-Token", tokens=("hs-wf-token",))
    source = HubSpotWorkflowSource(SourceOptions(secrets=(SECRET,), auth=auth))
    source.verify(request(body, {"X-Bridge-Token": "hs-wf-token"}))
    forged = {"X-HubSpot-Signature": "00" * 32, "X-HubSpot-Signature-Version": "v1"}
    with pytest.raises(Unauthorized) as exc:
        source.verify(request(body, forged | {"X-Bridge-Token": "hs-wf-token"}))
    assert reason(exc) == "signature_mismatch"


def test_workflow_secret_only_requires_a_signature() -> None:
    body = payload("hubspot-workflow", "flat.json")
    source = HubSpotWorkflowSource(SourceOptions(secrets=(SECRET,)))
    with pytest.raises(Unauthorized) as exc:
        source.verify(request(body, {}))
    assert reason(exc) == "missing_header"
    with pytest.raises(BadRequest):
        source.parse(request(b"[]", {}))
