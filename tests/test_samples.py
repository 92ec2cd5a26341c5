"""The demo's sample webhooks: valid routes, every preset covered, every answer as expected."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import yaml
from flask import Flask
from werkzeug.test import TestResponse

from bridge.core.routes import parse_routes
from bridge.demo.samples import Sample, demo_samples
from bridge.sources import PRESETS

ADMIN_TOKEN = "demo-admin-token"
HOOK_ORIGIN = "http://localhost"


def outcome(resp: TestResponse) -> str:
    """What the demo table shows for an answer (bridge/demo.py `_outcome`)."""
    replayed = " replayed" if resp.headers.get("Idempotent-Replayed") == "true" else ""
    if "xml" in resp.headers.get("Content-Type", ""):
        acked = "<Ack>true</Ack>" in resp.get_data(as_text=True)
        return f"{resp.status_code} {'ack' if acked else 'fault'}{replayed}"
    body: dict[str, Any] = resp.get_json(force=True)
    word = body.get("outcome") or body.get("reason") or ""
    return f"{resp.status_code} {word}{replayed}"


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


def test_every_sample_call_gets_its_expected_answer(
    make_app: Callable[..., Flask], sandbox: Any
) -> None:
    samples = demo_samples()
    document, env = all_routes(samples)
    app = make_app(yaml.safe_dump(document, sort_keys=False), **env, BRIDGE_ADMIN_TOKEN=ADMIN_TOKEN)
    client = app.test_client()
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    got, want = [], []
    for sample in samples:
        for call in sample.calls:
            for method, path, payload in call.before:
                setup = client.open(path, method=method, json=payload, headers=admin)
                assert setup.status_code in (200, 201), setup.get_data(as_text=True)
            body, headers = call.build(f"{HOOK_ORIGIN}/hooks/{sample.route}")
            resp = client.post(f"/hooks/{sample.route}", data=body, headers=headers)
            got.append((sample.route, call.label, outcome(resp)))
            want.append((sample.route, call.label, call.expect))
    assert got == want
    # Synchronous rows reached MeetBit once each (no call for replays, rejections or ack routes).
    synchronous = [c for _, _, c in want if c == "200 canceled"]
    canceled = [c for c in sandbox.calls() if c["status"] == 200]
    assert len(canceled) == len(synchronous)


def test_signatures_are_fresh_on_every_build() -> None:
    """A sample built twice is signed twice: the demo never sends a stale timestamp."""
    hubspot = next(s for s in demo_samples() if s.route_config["preset"] == "hubspot")
    _, first = hubspot.calls[0].build("http://localhost/hooks/x")
    assert abs(int(first["X-HubSpot-Request-Timestamp"]) / 1000 - time.time()) < 5
