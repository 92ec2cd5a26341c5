"""A ledger that answers but refuses the bridge (no schema yet, an older one, a role without
privileges) is a 503 that names the fix, on every path: hooks, /readyz and the command line."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from bridge.ledger.database import normalize_url
from tests.conftest import ZAP_TOKEN

HOOK = {"calendar_id": 12, "event_id": 345}


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from bridge.cli import main; main()", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.postgres
def test_a_postgresql_ledger_without_its_schema_names_db_upgrade(
    make_app: Callable[..., Flask], pg_url: str, tmp_path: Path
) -> None:
    app = make_app(DATABASE_URL=pg_url)  # PostgreSQL waits for `db upgrade`
    client = app.test_client()
    hook = client.post("/hooks/zap", json=HOOK, headers={"X-Bridge-Token": ZAP_TOKEN})
    assert hook.status_code == 503 and hook.headers["Retry-After"]
    assert "meetbit-bridge db upgrade" in hook.get_json()["detail"]
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert "meetbit-bridge db upgrade" in ready.get_json()["detail"]

    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": pg_url, "HOME": str(tmp_path)}
    listed = cli(env, "deliveries", "list")
    assert listed.returncode == 2
    assert "Traceback" not in listed.stderr
    assert len(listed.stderr.strip().splitlines()) == 1
    assert "meetbit-bridge db upgrade" in listed.stderr

    assert cli(env, "db", "upgrade").returncode == 0
    assert client.get("/readyz").status_code == 200


def test_an_older_schema_is_not_ready(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    app = make_app()
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    ledger = app.extensions["bridge"].ledger
    with ledger.db.write() as conn:
        conn.exec_driver_sql("UPDATE bridge_alembic_version SET version_num = '0001'")
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert "older schema" in ready.get_json()["detail"]


@pytest.fixture
def unprivileged_url(pg_migrated_url: str) -> Iterator[str]:
    """The migrated ledger, reached as a role that may connect but not touch its tables."""
    admin = sa.create_engine(normalize_url(pg_migrated_url), isolation_level="AUTOCOMMIT")
    role = "bridge_nopriv_" + uuid.uuid4().hex[:8]
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE ROLE {role} LOGIN"))
    url = sa.make_url(pg_migrated_url).set(username=role, password=None)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP OWNED BY {role}"))
            conn.execute(sa.text(f"DROP ROLE {role}"))
        admin.dispose()


@pytest.mark.postgres
def test_revoked_privileges_are_503_not_500(
    make_app: Callable[..., Flask], unprivileged_url: str, sandbox: Any
) -> None:
    client = make_app(DATABASE_URL=unprivileged_url, BRIDGE_ADMIN_TOKEN="adm").test_client()
    hook = client.post("/hooks/zap", json=HOOK, headers={"X-Bridge-Token": ZAP_TOKEN})
    assert hook.status_code == 503
    assert "refuses" in hook.get_json()["detail"]
    assert client.get("/readyz").status_code == 503
    listed = client.get("/admin/deliveries", headers={"Authorization": "Bearer adm"})
    assert listed.status_code == 503
    assert client.get("/metrics").status_code in (200, 503)  # never a 500
    assert sandbox.calls() == []
