"""What a sender is answered for each combination of delivery states."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from bridge.delivery.answers import answer, shown_outcome
from bridge.errors import EventNotFound, MappingError, UpstreamError
from bridge.ledger import Delivery

NOW = datetime(2026, 11, 24, tzinfo=UTC)


def delivery(status: str, outcome: str | None = None, n: int = 1, **kw: Any) -> Delivery:
    fields: dict[str, Any] = {
        "id": f"dlv_{n}", "route": "r", "idempotency_key": "k", "seq": n,
        "calendar_id": 1, "event_id": n, "note": "x", "status": status, "outcome": outcome,
        "attempts": 1, "max_attempts": 10, "created_at": NOW, "updated_at": NOW,
        "expires_at": NOW, "next_attempt_at": None, "lease_until": None, "last_error": None,
        "meetbit_status": None, "event": None, "error": None, "sent": False,
    }  # fmt: skip
    fields.update(kw)
    return Delivery(**fields)


CANCELED = delivery("succeeded", "canceled", 1, event={"id": 1})
ALREADY = delivery("succeeded", "already_canceled", 2)
IGNORED = delivery("ignored", "ignored", 3, error={"reason": "`when` is false: x"})
PENDING = delivery("pending", None, 4)
TRANSIENT = delivery("failed", None, 5, error={"reason": "timeout"}, last_error="read timeout")
NOT_FOUND = delivery("failed", "not_found", 6, last_error="Resource object does not exist.")


def test_a_transient_failure_is_queued_only_while_a_worker_runs() -> None:
    assert shown_outcome(TRANSIENT, worker_alive=True) == "queued"
    assert shown_outcome(TRANSIENT, worker_alive=False) == "failed"
    assert shown_outcome(PENDING, worker_alive=False) == "queued"
    assert shown_outcome(delivery("dead", "failed"), worker_alive=True) == "failed"


@pytest.mark.parametrize(
    ("items", "status", "outcome"),
    [
        ([CANCELED, ALREADY, IGNORED], 200, "canceled"),
        ([IGNORED, delivery("ignored", "ignored", 7)], 200, "ignored"),
        ([CANCELED, NOT_FOUND], 200, "partial"),
        ([NOT_FOUND, delivery("failed", "mapping_error", 8)], 200, "failed"),
        ([CANCELED, PENDING], 202, "queued"),
        ([CANCELED, TRANSIENT], 202, "queued"),  # with a worker alive
    ],
)
def test_several_deliveries(items: list[Delivery], status: int, outcome: str) -> None:
    result = answer(items, replayed=False, worker_alive=True)
    assert (result.status, result.body["outcome"]) == (status, outcome)
    assert "event" not in result.body
    for item, d in zip(result.body["deliveries"], items, strict=True):
        assert item["id"] == d.id
        if d.event is not None:  # each item carries its own event
            assert item["event"] == d.event


def test_a_batch_with_a_transient_failure_and_no_worker_is_502_so_the_sender_retries() -> None:
    with pytest.raises(UpstreamError) as info:
        answer([CANCELED, TRANSIENT], replayed=False, worker_alive=False)
    problem = info.value.to_problem()
    assert problem["status"] == 502 and problem["outcome"] == "partial"
    assert [d["outcome"] for d in problem["deliveries"]] == ["canceled", "failed"]


def test_single_answers() -> None:
    ok = answer([CANCELED], replayed=True, worker_alive=False)
    assert (ok.status, ok.body["event"], ok.replayed) == (200, {"id": 1}, True)
    assert answer([IGNORED], replayed=False, worker_alive=False).body["reason"].startswith("`when`")
    assert answer([PENDING], replayed=False, worker_alive=False).status == 202
    with pytest.raises(EventNotFound) as missing:
        answer([NOT_FOUND], replayed=True, worker_alive=False)
    assert missing.value.headers == {"Idempotent-Replayed": "true"}
    rejected = delivery("failed", "rejected", 9, error={"errors": {"cancel_note": ["too long"]}})
    with pytest.raises(MappingError) as bad:
        answer([rejected], replayed=False, worker_alive=False)
    assert bad.value.errors == {"cancel_note": ["too long"]}
    with pytest.raises(UpstreamError) as failed:
        answer([TRANSIENT], replayed=False, worker_alive=False)
    assert failed.value.reason == "timeout"
