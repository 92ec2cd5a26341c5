"""Liveness and readiness: `/healthz` answers while the process runs, `/readyz` only while the
ledger answers too."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskClient

UNREACHABLE_PG = "postgresql://postgres@127.0.0.1:1/x"


def test_healthz_and_readyz_when_all_is_well(client: FlaskClient) -> None:
    health = client.get("/healthz")
    assert health.status_code == 200 and health.get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json() == {
        "status": "ready",
        "routes": ["by-email", "zap", "zap-ack", "zap-lost"],
    }


def test_readyz_is_503_problem_while_the_ledger_is_unreachable(
    make_app: Callable[..., Flask],
) -> None:
    # Nothing listens on port 1; create_app migrates only SQLite, so the app still starts.
    client = make_app(DATABASE_URL=UNREACHABLE_PG).test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.mimetype == "application/problem+json"
    assert ready.headers["Retry-After"] == "5"
    problem = ready.get_json()
    assert problem["status"] == 503
    assert problem["type"].endswith(":ledger-unavailable")
    assert "postgres" not in ready.get_data(as_text=True)  # no connection string leaks
    health = client.get("/healthz")
    assert health.status_code == 200 and health.get_json() == {"status": "ok"}


def test_ops_endpoints_only_answer_get(client: FlaskClient) -> None:
    response = client.post("/healthz")
    assert response.status_code == 405
    assert response.mimetype == "application/problem+json"
    assert "GET" in response.headers["Allow"]
