"""The demo's sample webhooks (valid routes, every preset covered), the payload corpus and the
vendors' signers. The samples' answers and final outcomes are checked in process by
test_presets_e2e.py and under gunicorn by test_demo.py."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from standardwebhooks import Webhook

from bridge.delivery.routes import parse_routes
from bridge.demo import PAYLOADS, payload, payload_path, signers
from bridge.demo.samples import NOTHING, Sample, demo_samples
from bridge.sources import PRESETS


def all_routes(samples: list[Sample]) -> tuple[dict[str, Any], dict[str, str]]:
    routes: dict[str, Any] = {}
    env: dict[str, str] = {}
    for sample in samples:
        routes[sample.route] = sample.route_config
        env.update(sample.env)
    return {"routes": routes}, env


def test_every_preset_has_a_sample_and_route_names_are_unique() -> None:
    samples = demo_samples()
    assert {s.route_config["preset"] for s in samples} == set(PRESETS)
    assert len({s.route for s in samples}) == len(samples)
    labels = [(s.route, c.label) for s in samples for c in s.calls]
    assert len(set(labels)) == len(labels)


def test_each_route_config_validates_with_only_its_own_env() -> None:
    for sample in demo_samples():
        routes = parse_routes(
            {"routes": {sample.route: sample.route_config}}, sample.env, origin="sample"
        )
        assert routes[sample.route].preset == sample.route_config["preset"]


def test_the_demo_route_file_round_trips_through_yaml() -> None:
    document, env = all_routes(demo_samples())
    text = yaml.safe_dump(document, sort_keys=False)
    routes = parse_routes(yaml.safe_load(text), env, origin="bridge.yaml")
    assert list(routes) == [s.route for s in demo_samples()]


def test_the_expected_rows_cover_replay_ignore_and_rejections() -> None:
    expects = {c.expect for s in demo_samples() for c in s.calls}
    for wanted in (
        "200 canceled",
        "200 canceled replayed",
        "200 ignored",
        "202 queued",
        "200 ack",
        "401 bad_credentials",
        "401 signature_mismatch",
        "404 not_found",
    ):
        assert wanted in expects


def test_signatures_are_fresh_on_every_build() -> None:
    """A sample built twice is signed twice: the demo never sends a stale timestamp."""
    hubspot = next(s for s in demo_samples() if s.route_config["preset"] == "hubspot")
    _, first = hubspot.calls[0].build("http://localhost/hooks/x")
    assert abs(int(first["X-HubSpot-Request-Timestamp"]) / 1000 - time.time()) < 5


def test_samples_that_reach_meetbit_expect_where_they_end() -> None:
    for sample in demo_samples():
        for call in sample.calls:
            status = call.expect.split(" ", 1)[0]
            if status.startswith("4"):
                assert call.final in (NOTHING, "not_found"), (sample.route, call.label)
            else:
                assert call.final != NOTHING, (sample.route, call.label)


def test_the_corpus_is_one_folder_per_preset_and_every_file_is_there() -> None:
    assert {folder.name for folder in PAYLOADS.iterdir()} == set(PRESETS)
    for folder in PAYLOADS.iterdir():
        for path in folder.iterdir():
            assert payload(folder.name, path.name) == path.read_bytes()
            assert payload_path(folder.name, path.name) == path
    with pytest.raises(FileNotFoundError, match="no payload hubspot/nope.json"):
        payload("hubspot", "nope.json")


def test_standard_signer_agrees_with_the_reference_library() -> None:
    secret = "whsec_" + base64.b64encode(b"a key of thirty-two bytes, exact").decode()
    body = payload("standard", "meeting_canceled.json")
    at = datetime.now(UTC).replace(microsecond=0)
    headers = signers.standard_headers(secret, body, "msg_1", at=at.timestamp())
    assert headers["webhook-signature"] == Webhook(secret).sign("msg_1", at, body.decode())
    assert Webhook(secret).verify(body, headers) == json.loads(body)


def test_a_tampered_body_keeps_its_length_and_shape() -> None:
    for preset, name in (("hubspot", "deal_batch.json"), ("salesforce", "closed_lost.xml")):
        body = payload(preset, name)
        changed = signers.tampered(body)
        assert len(changed) == len(body) and changed != body
        assert sum(a != b for a, b in zip(body, changed, strict=True)) == 1
    assert json.loads(signers.tampered(b'{"id": 19}')) == {"id": 29}
    assert json.loads(signers.tampered(b'{"id": 0.5}')) == {"id": 1.5}
