"""The sandbox counts MeetBit's limits as MeetBit does: per calendar second, per Client and for
the whole Tenant (other apps included), and says so in either header form."""

from __future__ import annotations

import math
import time
from typing import Any

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from bridge.sandbox import SandboxConfig, SandboxServer, create_sandbox_app

KEYS = {"X-Access-Key-Id": "MBP-sandbox", "X-Access-Key-Secret": "sandbox-secret"}
DENIED = {"X-Access-Key-Id": "MBP-denied", "X-Access-Key-Secret": "denied-secret"}
PATH = "/api/public/v2.0/calendars/1/events/{}/cancel"


def cancel(client: FlaskClient, event_id: int, keys: dict[str, str] = KEYS) -> TestResponse:
    return client.post(PATH.format(event_id), json={"cancel_note": "x"}, headers=keys)


def start_of_a_second() -> None:
    """Sleep to just after the next calendar second, so a handful of calls fit in one."""
    now = time.time()
    time.sleep(math.floor(now) + 1.02 - now)


def test_calendar_seconds_are_counted_strictly_and_refill_at_the_next() -> None:
    client = create_sandbox_app(SandboxConfig(rate_limit=3, retry_after=0)).test_client()
    start_of_a_second()
    first = [cancel(client, i) for i in range(1, 5)]
    assert [r.status_code for r in first] == [200, 200, 200, 429]
    assert [r.headers["RateLimit-Remaining"] for r in first] == ["2", "1", "0", "0"]
    assert all(r.headers["RateLimit-Reset"] == "1" for r in first[:3])
    start_of_a_second()  # however close the last call was: a new second, a new budget
    assert cancel(client, 10).status_code == 200


def test_a_tenant_limit_is_shared_by_every_client() -> None:
    client = create_sandbox_app(SandboxConfig(rate_limit=3, tenant_limit=4)).test_client()
    start_of_a_second()
    answers = [cancel(client, 1), cancel(client, 2), cancel(client, 3, DENIED)]
    # The denied key's call counts against the tenant (MeetBit counts invalid requests too).
    assert [r.status_code for r in answers] == [200, 200, 401]
    # One left for the tenant, and the client has one left too: the tighter is reported.
    assert answers[1].headers["RateLimit-Remaining"] == "1"
    assert cancel(client, 4).status_code == 200
    refused = cancel(client, 5)
    assert refused.status_code == 429 and refused.headers["RateLimit-Limit"] == "3"


def test_the_current_drafts_headers() -> None:
    config = SandboxConfig(rate_limit=5, tenant_limit=8, headers="draft")
    client = create_sandbox_app(config).test_client()
    start_of_a_second()
    answer = cancel(client, 1)
    assert "RateLimit-Limit" not in answer.headers
    assert answer.headers["RateLimit-Policy"] == '"client";q=5;w=1, "tenant";q=8;w=1'
    assert answer.headers["RateLimit"] == '"client";r=4;t=1'
    both = create_sandbox_app(SandboxConfig(headers="both")).test_client()
    answer = cancel(both, 1)
    assert answer.headers["RateLimit-Limit"] == "5" and "RateLimit-Policy" in answer.headers


def test_the_other_app_eats_the_tenant_budget_and_is_counted_apart() -> None:
    config = SandboxConfig(rate_limit=5, tenant_limit=4, other_app_rate=2, retry_after=0)
    with SandboxServer(config) as sandbox:
        time.sleep(2.1)  # the other app's calls of two whole seconds at least
        client = sandbox.app.test_client()
        start_of_a_second()
        time.sleep(0.78)  # its two calls of this second (at .25 and .75) are in
        answers: list[Any] = [cancel(client, i) for i in range(1, 5)]
        stats = sandbox.stats()
    # 4 for the tenant, 2 of them the other app's: 2 left for this client, not its own 5.
    assert [r.status_code for r in answers] == [200, 200, 429, 429]
    assert stats["other_app"]["calls"] >= 4 and stats["other_app"]["rate_limited"] == 0
    assert stats["tenant_max_in_calendar_second"] == 4
    assert stats["calls"] == 4  # the other app's calls are not the bridge's
    seconds = stats["per_second"]["MBP-sandbox"]
    assert sum(seconds.values()) == 4 and stats["max_in_calendar_second"]["MBP-sandbox"] == 4


def test_two_tenants_have_their_own_keys_and_limits() -> None:
    acme = SandboxConfig(key_id="MBP-acme", key_secret="acme-secret", rate_limit=2)
    globex = SandboxConfig(key_id="MBP-globex", key_secret="globex-secret", rate_limit=4)
    with SandboxServer(acme) as one, SandboxServer(globex) as two:
        assert one.url != two.url
        a, g = one.app.test_client(), two.app.test_client()
        acme_keys = {"X-Access-Key-Id": "MBP-acme", "X-Access-Key-Secret": "acme-secret"}
        globex_keys = {"X-Access-Key-Id": "MBP-globex", "X-Access-Key-Secret": "globex-secret"}
        start_of_a_second()
        assert cancel(a, 1, globex_keys).status_code == 401  # each tenant knows its own keys
        assert cancel(a, 2, acme_keys).headers["RateLimit-Limit"] == "2"
        assert cancel(g, 2, globex_keys).headers["RateLimit-Limit"] == "4"
