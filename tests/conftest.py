"""Shared fixtures: ledger databases (SQLite always, PostgreSQL when configured), the MeetBit
sandbox (one server per session, reset for each test) and bridge apps wired to it.

Loopback servers for tests (`wsgi_server`, `GunicornServer`) live in `bridge.testing`.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import settings

from bridge.ledger import Ledger
from bridge.sandbox import SandboxConfig, SandboxServer

PG_ENV = "BRIDGE_TEST_DATABASE_URL"

# Property-based and schema-driven fuzzing: a bounded run by default (CI), deeper with
# HYPOTHESIS_PROFILE=long.
settings.register_profile("default", max_examples=100, deadline=None)
settings.register_profile("long", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def pg_admin_url() -> str | None:
    return os.environ.get(PG_ENV) or None


def _pg_admin_or_skip() -> str:
    admin = pg_admin_url()
    if not admin:
        if os.environ.get("BRIDGE_TEST_REQUIRE_POSTGRES"):
            pytest.fail(f"{PG_ENV} is not set but BRIDGE_TEST_REQUIRE_POSTGRES is")
        pytest.skip(f"{PG_ENV} is not set; PostgreSQL tests skipped")
    return admin


@contextmanager
def _pg_database(admin: str, *, template: str | None = None) -> Iterator[str]:
    """A new PostgreSQL database (a copy of `template` if given), dropped afterwards."""
    import sqlalchemy as sa

    from bridge.ledger.database import normalize_url

    name = "bridge_test_" + uuid.uuid4().hex[:12]
    copy = f' TEMPLATE "{template}"' if template else ""
    engine = sa.create_engine(normalize_url(admin), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"{copy}'))
        url = sa.make_url(normalize_url(admin)).set(database=name)
        yield url.render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


def _migrate(url: str) -> None:
    led = Ledger(url)
    try:
        led.ensure_schema()
    finally:
        led.dispose()


@pytest.fixture(scope="session")
def _pg_template() -> Iterator[str]:
    """One migrated PostgreSQL database per test session; tests get copies of it."""
    admin = _pg_admin_or_skip()
    with _pg_database(admin) as url:
        _migrate(url)
        yield url.rsplit("/", 1)[-1]


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite ledger per test session; tests get copies of the file."""
    path = tmp_path_factory.mktemp("template") / "ledger.db"
    _migrate(f"sqlite:///{path}")
    return path


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test; skipped when none is configured."""
    with _pg_database(_pg_admin_or_skip()) as url:
        yield url


@pytest.fixture
def pg_migrated_url(_pg_template: str) -> Iterator[str]:
    """A fresh PostgreSQL database with the ledger's schema (a copy of the session's)."""
    with _pg_database(_pg_admin_or_skip(), template=_pg_template) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


def migrated_sqlite(template: Path, folder: Path) -> str:
    """A copy of the migrated SQLite template as `folder/ledger.db` (kept if already there)."""
    path = folder / "ledger.db"
    if not path.exists():
        shutil.copyfile(template, path)
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database, without the ledger's schema, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated ledger database; each test that takes it runs on SQLite and PostgreSQL."""
    if request.param == "sqlite":
        return migrated_sqlite(request.getfixturevalue("_sqlite_template"), tmp_path)
    return str(request.getfixturevalue("pg_migrated_url"))


@pytest.fixture
def ledger(database_url: str) -> Iterator[Ledger]:
    """A migrated ledger on each database of `database_url`."""
    led = Ledger(database_url)
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
def make_app(
    tmp_path: Path, sandbox: Any, _sqlite_template: Path
) -> Iterator[Callable[..., Flask]]:
    """`make_app(routes_yaml=DEFAULT_ROUTES, **env)`: a bridge app wired to the sandbox."""
    from bridge import create_app
    from bridge.settings import Settings

    apps: list[Flask] = []

    def factory(routes_yaml: str = DEFAULT_ROUTES, **env: str) -> Flask:
        migrated_sqlite(_sqlite_template, tmp_path)  # the default DATABASE_URL's file
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
