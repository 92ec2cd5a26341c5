"""Guessing the admin token is slowed: ten wrong tokens from one address within a minute hold
that address off the admin API (429 with Retry-After, the right token included) until the
window has passed; other addresses and the hooks are not affected."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bridge.web.throttle import MAX_ADDRESSES, FailedTokens
from tests.conftest import ZAP_TOKEN

RIGHT = {"Authorization": "Bearer tok-7f3a9"}
WRONG = {"Authorization": "Bearer guess"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(make_app: Callable[..., Flask], clock: Clock) -> FlaskClient:
    app = make_app(BRIDGE_ADMIN_TOKEN="tok-7f3a9")
    # The one seam: the throttle's clock, so that a minute passes without waiting for it.
    app.extensions["admin_failures"] = FailedTokens(clock=clock)
    return app.test_client()


def from_address(address: str) -> dict[str, str]:
    return {"REMOTE_ADDR": address}


def test_ten_wrong_tokens_hold_the_address_off_until_the_window_passes(
    client: FlaskClient, clock: Clock
) -> None:
    for _ in range(10):
        assert client.get("/admin/deliveries", headers=WRONG).status_code == 401
        clock.now += 1
    held = client.get("/admin/deliveries", headers=RIGHT)
    assert held.status_code == 429
    assert held.mimetype == "application/problem+json"
    problem = held.get_json()
    assert problem["type"] == "urn:meetbit-bridge:problem:too-many-attempts"
    assert "tok-7f3a9" not in held.get_data(as_text=True)
    # The first failure was at 1000, now is 1010: it ages out of the minute at 1060.
    assert held.headers["Retry-After"] == "50"

    clock.now += 49
    assert client.get("/admin/deliveries", headers=RIGHT).status_code == 429
    clock.now += 1
    assert client.get("/admin/deliveries", headers=RIGHT).status_code == 200


def test_other_addresses_and_the_hooks_are_not_held(client: FlaskClient) -> None:
    for _ in range(10):
        client.get("/admin/deliveries", headers=WRONG)
    assert client.get("/admin/deliveries", headers=RIGHT).status_code == 429

    other = client.get("/admin/deliveries", headers=RIGHT, environ_base=from_address("10.0.0.2"))
    assert other.status_code == 200
    hook = client.post(
        "/hooks/zap",
        json={"calendar_id": 12, "event_id": 345},
        headers={"X-Bridge-Token": ZAP_TOKEN},
    )
    assert hook.status_code == 200


def test_requests_without_a_token_are_not_counted_as_guesses(client: FlaskClient) -> None:
    for _ in range(20):
        assert client.get("/admin/deliveries").status_code == 401
    assert client.get("/admin/deliveries", headers=RIGHT).status_code == 200


def test_nine_wrong_tokens_and_a_right_one_pass(client: FlaskClient) -> None:
    for _ in range(9):
        client.get("/admin/deliveries", headers=WRONG)
    assert client.get("/admin/deliveries", headers=RIGHT).status_code == 200


def test_a_flood_of_addresses_costs_bounded_memory(clock: Clock) -> None:
    failures = FailedTokens(clock=clock)
    for n in range(MAX_ADDRESSES + 50):
        failures.failed(f"10.{n // 65536}.{n // 256 % 256}.{n % 256}")
    assert len(failures._failures) == MAX_ADDRESSES
    for _ in range(10):
        failures.failed("192.0.2.1")
    assert failures.retry_after("192.0.2.1") == 60
