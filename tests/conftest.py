"""Shared fixtures: ledger databases (SQLite always, PostgreSQL when configured), the MeetBit
sandbox (one server per session, reset for each test) and bridge apps wired to it.

Loopback servers for tests (`wsgi_server`, `GunicornServer`) live in `bridge.testing`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bridge.ledger import Ledger
from bridge.sandbox import SandboxConfig, SandboxServer

PG_ENV = "BRIDGE_TEST_DATABASE_URL"


def pg_admin_url() -> str | None:
    return os.environ.get(PG_ENV) or None


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test; skipped when none is configured."""
    admin = pg_admin_url()
    if not admin:
        if os.environ.get("BRIDGE_TEST_REQUIRE_POSTGRES"):
            pytest.fail(f"{PG_ENV} is not set but BRIDGE_TEST_REQUIRE_POSTGRES is")
        pytest.skip(f"{PG_ENV} is not set; PostgreSQL tests skipped")
    import sqlalchemy as sa

    from bridge.ledger.db import normalize_url

    name = "bridge_test_" + uuid.uuid4().hex[:12]
    engine = sa.create_engine(normalize_url(admin), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(normalize_url(admin)).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test that takes this runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def ledger(database_url: str) -> Iterator[Ledger]:
    """A migrated ledger on each database of `database_url`."""
    led = Ledger(database_url)
    led.ensure_schema()
    try:
        yield led
    finally:
        led.dispose()


# --- the bridge against the MeetBit sandbox -------------------------------------------------

ZAP_TOKEN = "tok-1"

# A generic route with a header token; most hook tests use it.
DEFAULT_ROUTES = """
routes:
  zap:
    preset: generic
    auth: {header: X-Bridge-Token, token_env: [ZAP_TOKEN, ZAP_TOKEN_NEXT]}
    target:
      calendar_id: "{{ payload.calendar_id }}"
      event_id: "{{ payload.event_id }}"
    note: "{{ payload.note | default('Canceled by automation', true) }}"
  zap-lost:
    preset: generic
    auth: {header: X-Bridge-Token, token_env: ZAP_TOKEN}
    when: "payload.stage == 'lost'"
    target: {calendar_id: "{{ payload.calendar_id }}", event_id: "{{ payload.event_id }}"}
    note: "Deal lost"
  zap-ack:
    preset: generic
    auth: {header: X-Bridge-Token, token_env: ZAP_TOKEN}
    respond: ack
    target: {calendar_id: "{{ payload.calendar_id }}", event_id: "{{ payload.event_id }}"}
    note: "Queued cancel"
  by-email:
    preset: generic
    auth: {bearer_env: ZAP_TOKEN}
    target: {customer_email: "{{ payload.email }}"}
    note: "Customer churned"
"""


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[SandboxServer]:
    """One MeetBit sandbox on an ephemeral port for the whole session, unthrottled."""
    with SandboxServer(SandboxConfig(rate_limit=0)) as server:
        yield server


@pytest.fixture
def sandbox(sandbox_server: SandboxServer) -> SandboxServer:
    """The session's sandbox, fresh for each test: no calls, cancels, bookings or rate-limit
    history, every knob as it started (a test may change them: rate limit, latency, failures;
    the next test gets the defaults back)."""
    sandbox_server.reset()
    return sandbox_server


def bridge_env(sandbox: Any, tmp_path: Path, routes_yaml: str = DEFAULT_ROUTES) -> dict[str, str]:
    config = tmp_path / "bridge.yaml"
    config.write_text(routes_yaml)
    return {
        "MEETBIT_BASE_URL": sandbox.url,
        "MEETBIT_ACCESS_KEY_ID": sandbox.config.key_id,
        "MEETBIT_ACCESS_KEY_SECRET": sandbox.config.key_secret,
        "MEETBIT_RATE_LIMIT": "1000/s",
        "MEETBIT_TIMEOUT": "2,5",
        "BRIDGE_CONFIG": str(config),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
        "ZAP_TOKEN": ZAP_TOKEN,
    }


@pytest.fixture
def make_app(tmp_path: Path, sandbox: Any) -> Iterator[Callable[..., Flask]]:
    """`make_app(routes_yaml=DEFAULT_ROUTES, **env)`: a bridge app wired to the sandbox."""
    from bridge import create_app
    from bridge.settings import Settings

    apps: list[Flask] = []

    def factory(routes_yaml: str = DEFAULT_ROUTES, **env: str) -> Flask:
        environ = {**bridge_env(sandbox, tmp_path, routes_yaml), **env}
        app = create_app(Settings.from_env(environ))
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.extensions["bridge"].close()


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
