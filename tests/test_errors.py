"""The error hierarchy is plain data: problems from class attributes, and no Flask to import."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from bridge.errors import BridgeError, InFlight, LedgerUnavailable, MappingError


def test_a_problem_is_built_from_the_class_and_the_instance() -> None:
    err = MappingError(
        "2 fields do not map",
        reason="mapping",
        errors={"target.event_id": ("missing",)},
        delivery_id="dlv_1",
        extra={"outcome": "failed"},
    )
    assert err.to_problem() == {
        "type": "urn:meetbit-bridge:problem:mapping-error",
        "title": "Payload does not map to a cancel",
        "status": 422,
        "detail": "2 fields do not map",
        "reason": "mapping",
        "errors": {"target.event_id": ["missing"]},
        "delivery_id": "dlv_1",
        "outcome": "failed",
    }
    # Headers travel with the error for the renderer; they are not part of the body.
    busy = InFlight("in flight", headers={"Retry-After": "2"})
    assert busy.headers == {"Retry-After": "2"} and "Retry-After" not in busy.to_problem()


def test_status_title_and_slug_are_class_attributes() -> None:
    expected = (409, "Delivery in flight", "in-flight")
    assert (InFlight.status, InFlight.title, InFlight.slug) == expected
    assert BridgeError.status == 500 and BridgeError("x").to_problem()["type"].endswith(":internal")
    assert LedgerUnavailable().headers == {"Retry-After": "5"}


def test_the_ledger_the_worker_and_the_errors_never_load_flask() -> None:
    """A worker process has no web layer: importing it must not pull in Flask (or werkzeug)."""
    script = textwrap.dedent(
        """
        import sys
        import bridge.errors, bridge.ledger, bridge.delivery.worker
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("flask", "werkzeug"))
        print(",".join(loaded))
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert run.stdout.strip() == "", f"loaded: {run.stdout.strip()}"
