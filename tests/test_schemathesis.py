"""Every documented endpoint, driven from the app's own /openapi.json with generated requests
(Schemathesis): never a 5xx, and every answer as documented (status, content type, body
schema). The admin API is reached with its token; hooks mostly answer 401, as they should."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

ADMIN = "schema-admin-token"


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def test_every_documented_endpoint_answers_as_documented(
    make_app: Callable[..., Flask], database_url: str
) -> None:
    # Schemathesis's own pytest plugin does not run on this pytest; its Hypothesis strategies
    # are driven directly instead, one operation after another.
    app = make_app(
        BRIDGE_ADMIN_TOKEN=ADMIN, MEETBIT_WEBHOOK_SECRET="whsec-schema", DATABASE_URL=database_url
    )
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    sent: list[str] = []
    assert len(operations) >= 10  # hooks, MeetBit webhooks, admin, ops: all documented

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(suppress_health_check=list(HealthCheck), deadline=None, database=None)
        def answers_as_documented(case: Any) -> None:
            case.call_and_validate(headers={"Authorization": f"Bearer {ADMIN}"}, checks=CHECKS)
            sent.append(case.operation.label)

        answers_as_documented()
    # Every operation was exercised, most of them many times.
    assert {o.label for o in operations} == set(sent)
    assert len(sent) >= 10 * len(operations)
