"""Several MeetBit accounts: declared in the route file, picked per route, each with its own
client, shared limiter (its own ledger row, following its own tenant's headers) and metrics."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from flask import Flask

from bridge.delivery.dispatch import RATE_KEY, Dispatcher
from bridge.delivery.routes import parse_route_file
from bridge.errors import ConfigError
from bridge.ledger import Ledger, NewDelivery
from bridge.meetbit import MeetBitClient
from bridge.sandbox import SandboxConfig, SandboxServer

from .conftest import DEFAULT_ROUTES, ZAP_TOKEN
from .test_console import ADMIN, sign_in

ACCOUNTS = """
meetbit:
  accounts:
    acme:
      base_url_env: ACME_URL
      key_id_env: ACME_KEY_ID
      key_secret_env: ACME_KEY_SECRET
      rate_limit: 300/min
    globex:
      base_url_env: GLOBEX_URL
      key_id_env: GLOBEX_KEY_ID
      key_secret_env: GLOBEX_KEY_SECRET
"""
ROUTE = """
  {name}:
    preset: generic
    auth: {{header: X-Bridge-Token, token_env: ZAP_TOKEN}}
    meetbit_account: {account}
    target: {{calendar_id: "{{{{ payload.calendar_id }}}}", event_id: "{{{{ payload.event_id }}}}"}}
    note: "Canceled for {account}"
"""
ENV = {
    "ZAP_TOKEN": ZAP_TOKEN,
    "ACME_URL": "https://acme.example.com",
    "ACME_KEY_ID": "MBP-acme",
    "ACME_KEY_SECRET": "acme-secret",
    "GLOBEX_URL": "https://globex.example.com",
    "GLOBEX_KEY_ID": "MBP-globex",
    "GLOBEX_KEY_SECRET": "globex-secret",
}


def routes_file(*accounts: str) -> str:
    routes = "".join(ROUTE.format(name=f"to-{a}", account=a) for a in accounts)
    return DEFAULT_ROUTES.rstrip() + routes + ACCOUNTS


def test_accounts_are_read_and_routes_pick_them() -> None:
    routes, accounts = parse_route_file(
        yaml.safe_load(routes_file("acme", "globex")), ENV, origin="f"
    )
    assert routes["to-acme"].meetbit_account == "acme"
    assert routes["zap"].meetbit_account is None  # the MEETBIT_* variables
    assert (accounts["acme"].base_url, accounts["acme"].key_id) == (
        "https://acme.example.com",
        "MBP-acme",
    )
    assert accounts["acme"].rate_limit == 5.0 and accounts["globex"].rate_limit is None
    assert "acme-secret" not in repr(accounts["acme"])


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda t: t.replace("meetbit_account: acme", "meetbit_account: initech"),
         "f.routes.to-acme.meetbit_account: no account 'initech' in meetbit.accounts"),
        (lambda t: t.replace("    acme:", "    default:"),
         "f.meetbit.accounts.default: `default` is the MEETBIT_* variables' account"),
        (lambda t: t.replace("rate_limit: 300/min", "rate_limit: lots"),
         "f.meetbit.accounts.acme.rate_limit"),
        (lambda t: t.replace("key_id_env: ACME_KEY_ID", "key_id_env: ACME_UNSET"),
         "f.meetbit.accounts.acme.key_id_env: environment variable ACME_UNSET is not set"),
        (lambda t: t.replace("      base_url_env: ACME_URL\n", ""),
         "f.meetbit.accounts.acme.base_url_env"),
    ],
    ids=["unknown-account", "default-name", "bad-rate", "unset-variable", "missing-field"],
)  # fmt: skip
def test_bad_accounts_are_refused_at_startup(change: Callable[[str], str], problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_route_file(yaml.safe_load(change(routes_file("acme"))), ENV, origin="f")
    assert any(p.startswith(problem) for p in info.value.problems), info.value.problems


def test_each_route_calls_its_own_tenant_with_its_own_key_and_limiter(
    make_app: Callable[..., Flask], sandbox: Any
) -> None:
    acme = SandboxConfig(key_id="MBP-acme", key_secret="acme-secret", rate_limit=2)
    with SandboxServer(acme) as acme_sandbox:
        env = {**ENV, "ACME_URL": acme_sandbox.url, "GLOBEX_URL": acme_sandbox.url}
        app = make_app(routes_file("acme"), BRIDGE_ADMIN_TOKEN=ADMIN, **env)
        client = app.test_client()
        headers = {"X-Bridge-Token": ZAP_TOKEN}
        for event_id in (501, 502, 503):
            answer = client.post(
                "/hooks/to-acme", json={"calendar_id": 1, "event_id": event_id}, headers=headers
            )
            assert answer.get_json()["outcome"] in ("canceled", "queued"), answer.get_json()
        body = {"calendar_id": 1, "event_id": 504}
        default = client.post("/hooks/zap", json=body, headers=headers)
        assert default.get_json()["outcome"] == "canceled"
        acme_calls = acme_sandbox.calls()
        metrics = client.get("/metrics").get_data(as_text=True)
        sign_in(client, ADMIN)
        overview = client.get("/console").text
    assert {c["key_id"] for c in acme_calls} == {"MBP-acme"}
    assert [c["key_id"] for c in sandbox.calls()] == [sandbox.config.key_id]
    # acme's tenant said 2/s: its limiter follows, each second at most two of its calls.
    per_second = acme_sandbox.stats()["max_in_calendar_second"]
    assert per_second["MBP-acme"] <= 2 and acme_sandbox.stats()["rate_limited"] == 0
    ledger: Ledger = app.extensions["bridge"].ledger
    assert ledger.rate.state(f"{RATE_KEY}:acme").heard == 2.0
    assert ledger.rate.state(RATE_KEY).heard == 0.0  # the default sandbox is unthrottled
    assert 'meetbit_bridge_meetbit_calls_total{account="acme",result="ok"}' in metrics
    assert 'meetbit_bridge_meetbit_calls_total{account="default",result="ok"}' in metrics
    # The console shows each account's limiter: its ceiling and the rate it spends now.
    assert (
        '2/s</span>\n    <span class="label">MeetBit rate (acme, limit 5/s), not paused' in overview
    )
    assert "1000/s</span>" in overview and "MeetBit rate (default, limit 1000/s)" in overview


def test_the_worker_drains_each_account_at_its_own_rate(ledger: Ledger, sandbox: Any) -> None:
    """One dispatcher, two tenants at 2/s and 3/s: the next due delivery is called through the
    account of its route, and neither tenant's seconds ever hold more than its limit."""
    from bridge.delivery.dispatch import Account

    one = SandboxConfig(key_id="MBP-one", key_secret="s1", rate_limit=2)
    two = SandboxConfig(key_id="MBP-two", key_secret="s2", rate_limit=3)
    with SandboxServer(one) as s1, SandboxServer(two) as s2:
        clients = [MeetBitClient(s.url, s.config.key_id, s.config.key_secret) for s in (s1, s2)]
        default = MeetBitClient(sandbox.url, sandbox.config.key_id, sandbox.config.key_secret)
        dispatcher = Dispatcher(
            ledger,
            default,
            rate=None,
            timeout=(1.0, 2.0),
            accounts={
                "one": Account("one", clients[0], None),
                "two": Account("two", clients[1], 10.0),
            },
            route_accounts={"r1": "one", "r2": "two"},
        )
        rows = [
            NewDelivery(route=f"r{1 + i % 2}", idempotency_key=f"k{i}", calendar_id=1,
                        event_id=700 + i, note="bye")
            for i in range(10)
        ]  # fmt: skip
        ledger.deliveries.record(rows)
        started = time.monotonic()
        while ledger.queries.counts_by_status().get("succeeded", 0) < 10:
            assert time.monotonic() - started < 30
            dispatcher.attempt(None, deadline=None, by="worker")
        for c in (*clients, default):
            c.close()
        stats = [s.stats() for s in (s1, s2)]
    assert [st["calls"] for st in stats] == [5, 5]
    assert stats[0]["max_in_calendar_second"]["MBP-one"] <= 2
    assert stats[1]["max_in_calendar_second"]["MBP-two"] <= 3
    assert [st["rate_limited"] for st in stats] == [0, 0]
    assert sandbox.calls() == []
