"""No secret the bridge is configured with ever leaves it: not in logs, answers (problem bodies
included), the ledger, /metrics or /openapi.json. Every demo request (every preset, good and
tampered), admin calls with good and bad tokens, and MeetBit's own webhooks are sent; then every
output is searched for every secret value."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from flask import Flask

from bridge.demo import signers
from bridge.demo.samples import demo_samples
from bridge.ledger.tables import metadata

ADMIN_TOKEN = "adm-7f3c9b1e5a2d4c68"
WEBHOOK_SECRET = "mbw-secret-0c1d2e3f4a5b"
ROUTE_SECRET_NAMES = ("TOKEN", "PASSWORD", "SECRET")


def secrets_of(env: dict[str, str], sandbox: Any) -> set[str]:
    values = {ADMIN_TOKEN, WEBHOOK_SECRET, sandbox.config.key_secret}
    values |= {v for k, v in env.items() if any(n in k for n in ROUTE_SECRET_NAMES)}
    # Standard Webhooks secrets are used as their base64 key as well as written.
    values |= {v.removeprefix("whsec_") for v in values}
    return {v for v in values if len(v) >= 8}


def test_no_configured_secret_appears_in_any_output(
    make_app: Callable[..., Flask], sandbox: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    samples = demo_samples()
    routes = {s.route: s.route_config for s in samples}
    env: dict[str, str] = {}
    for sample in samples:
        env.update(sample.env)
    app = make_app(
        yaml.safe_dump({"routes": routes}),
        **env,
        BRIDGE_ADMIN_TOKEN=ADMIN_TOKEN,
        MEETBIT_WEBHOOK_SECRET=WEBHOOK_SECRET,
    )
    # After the factory, which sets the bridge's own level: everything it logs is searched.
    caplog.set_level(logging.DEBUG, logger="bridge")
    client = app.test_client()
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    outputs: list[str] = []

    def keep(resp: Any) -> None:
        outputs.append(resp.get_data(as_text=True))
        outputs.append(json.dumps(dict(resp.headers)))

    for sample in samples:
        for call in sample.calls:
            for method, path, body in call.before:
                keep(client.open(path, method=method, json=body, headers=admin))
            raw, headers = call.build(f"http://localhost/hooks/{sample.route}")
            keep(client.post(f"/hooks/{sample.route}", data=raw, headers=headers))
            # The same request with its credentials sent where they do not belong.
            moved = {k: v for k, v in headers.items() if k.lower() == "content-type"}
            keep(client.post(f"/hooks/{sample.route}?token={ADMIN_TOKEN}", data=raw, headers=moved))
    keep(client.get("/admin/deliveries?limit=200", headers=admin))
    keep(client.get("/admin/deliveries", headers={"Authorization": f"Bearer {ADMIN_TOKEN}x"}))
    keep(client.get("/admin/deliveries", headers={"Authorization": f"Basic {ADMIN_TOKEN}"}))
    body, headers = signers.meetbit_webhook(
        WEBHOOK_SECRET, "events.deleted", {"calendar_id": 1, "event_id": 2}, webhook_id="wh_1"
    )
    keep(client.post("/meetbit/webhooks", data=body, headers=headers))
    keep(client.post("/meetbit/webhooks", data=body, headers={**headers, "X-Webhook-Id": "x"}))
    keep(client.get("/metrics"))
    keep(client.get("/openapi.json"))
    keep(client.get("/readyz"))

    ledger = app.extensions["bridge"].ledger
    with ledger.db.read() as conn:
        for table in metadata.sorted_tables:
            outputs += [repr(tuple(row)) for row in conn.execute(sa.select(table))]
    outputs.append(caplog.text)
    outputs += [repr(r.__dict__) for r in caplog.records]

    everything = "\n".join(outputs)
    assert len(everything) > 10_000  # the scenario produced plenty to search
    leaked = {s for s in secrets_of(env, sandbox) if s in everything}
    assert leaked == set()
