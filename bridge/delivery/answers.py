"""Shape what the sender is answered (the README's "What the sender is answered") from the
deliveries as recorded.

Answers are derived from ledger rows only, so a duplicate webhook gets the same JSON as the
first one did. Error outcomes are raised as BridgeErrors for the one problem+json renderer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bridge.core.delivery import Delivery, NewDelivery
from bridge.errors import EventNotFound, MappingError, UpstreamError

SUCCESS = ("canceled", "already_canceled")


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    replayed: bool = False


def shown_outcome(d: Delivery, *, worker_alive: bool) -> str:
    """The contract's outcome word for one delivery."""
    if d.status == "succeeded" and d.outcome in SUCCESS:
        return d.outcome
    if d.status == "ignored":
        return "ignored"
    if d.outcome == "not_found":
        return "not_found"
    if d.status == "dead" or d.final:
        return "failed"
    if d.status == "failed" and not worker_alive:
        # A transient failure nobody will retry: the sender's own retry must attempt it again.
        return "failed"
    return "queued"


def delivery_json(d: Delivery, *, worker_alive: bool, with_detail: bool) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": d.id,
        "status": d.status,
        "outcome": shown_outcome(d, worker_alive=worker_alive),
        "calendar_id": d.calendar_id,
        "event_id": d.event_id,
        "url": f"/admin/deliveries/{d.id}",
    }
    if with_detail:
        if d.event is not None:
            item["event"] = d.event
        elif d.status == "ignored":
            item["reason"] = (d.error or {}).get("reason")
        elif item["outcome"] not in SUCCESS + ("queued",):
            item["error"] = _error_of(d)
    return item


def _mapping_problem(error: dict[str, Any] | None) -> dict[str, Any]:
    """What a sender needs of a stored mapping-error problem: its detail and field errors."""
    return {k: v for k, v in (error or {}).items() if k in ("detail", "errors")}


def _error_of(d: Delivery) -> dict[str, Any]:
    if d.outcome == "mapping_error" and d.error:
        return _mapping_problem(d.error)
    error: dict[str, Any] = {"detail": d.last_error or d.outcome or d.status}
    if d.error and "reason" in d.error:
        error["reason"] = d.error["reason"]
    if d.error and "errors" in d.error:
        error["errors"] = d.error["errors"]
    return error


def answer(deliveries: Sequence[Delivery], *, replayed: bool, worker_alive: bool) -> Answer:
    if len(deliveries) == 1:
        return _single(deliveries[0], replayed=replayed, worker_alive=worker_alive)
    items = [delivery_json(d, worker_alive=worker_alive, with_detail=True) for d in deliveries]
    shown = [item["outcome"] for item in items]
    body: dict[str, Any] = {"deliveries": items}
    if any(d.status == "failed" and not d.final for d in deliveries) and not worker_alive:
        raise UpstreamError(
            "some cancels failed at MeetBit; retry the webhook to attempt them again",
            extra={"outcome": "partial" if _any_success(shown) else "failed", **body},
        )
    if "queued" in shown:
        return Answer(202, {"outcome": "queued", **body}, replayed)
    if all(o in SUCCESS + ("ignored",) for o in shown):
        outcome = "canceled" if _any_success(shown) else "ignored"
    else:
        outcome = "partial" if _any_success(shown) else "failed"
    return Answer(200, {"outcome": outcome, **body}, replayed)


def _any_success(shown: Sequence[str]) -> bool:
    return any(o in SUCCESS for o in shown)


def _single(d: Delivery, *, replayed: bool, worker_alive: bool) -> Answer:
    outcome = shown_outcome(d, worker_alive=worker_alive)
    # A replayed error answer carries the header too: the sender sees it was stored.
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    listed = [delivery_json(d, worker_alive=worker_alive, with_detail=False)]
    common = {"delivery_id": d.id, "deliveries": listed}
    if outcome in SUCCESS:
        body = {"outcome": outcome, "delivery_id": d.id, "event": d.event, "deliveries": listed}
        return Answer(200, body, replayed)
    if outcome == "ignored":
        reason = (d.error or {}).get("reason")
        return Answer(200, {"outcome": "ignored", "reason": reason, **common}, replayed)
    if outcome == "queued":
        return Answer(202, {"outcome": "queued", **common}, replayed)
    if outcome == "not_found":
        raise EventNotFound(
            f"MeetBit says event {d.event_id} does not exist in calendar {d.calendar_id}",
            delivery_id=d.id,
            headers=headers,
            extra={"outcome": "not_found", "deliveries": listed},
        )
    if d.outcome in ("mapping_error", "rejected"):
        error = _error_of(d)
        raise MappingError(
            error.get("detail") or "the payload does not map to a MeetBit cancel",
            errors=error.get("errors"),
            delivery_id=d.id,
            headers=headers,
            extra={"outcome": "failed", "deliveries": listed},
        )
    reason = (d.error or {}).get("reason")
    raise UpstreamError(
        f"MeetBit call failed: {d.last_error or reason or 'unknown error'}",
        reason=reason,
        delivery_id=d.id,
        headers=headers,
        extra={"outcome": "failed", "deliveries": listed},
    )


def dry_run(rows: Sequence[NewDelivery]) -> Answer:
    items = []
    for row in rows:
        item: dict[str, Any] = {"idempotency_key": row.idempotency_key}
        if row.status == "ignored":
            item.update(outcome="ignored", reason=(row.error or {}).get("reason"))
        elif row.outcome == "mapping_error":
            item.update(outcome="failed", error=_mapping_problem(row.error))
        else:
            item.update(
                outcome="would_cancel",
                calendar_id=row.calendar_id,
                event_id=row.event_id,
                note=row.note,
            )
        items.append(item)
    return Answer(200, {"outcome": "dry_run", "deliveries": items})
