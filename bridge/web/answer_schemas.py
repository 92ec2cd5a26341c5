"""marshmallow schemas of what `POST /hooks/<route>` answers: the hook answer and the RFC 9457
problem. They document the shapes built in `bridge.delivery.answers` and `bridge.errors`
for /openapi.json.
"""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from bridge.core.delivery import STATUSES
from bridge.meetbit.schemas import EventSchema

__all__ = [
    "ANSWER_OUTCOMES",
    "ITEM_OUTCOMES",
    "DeliveryErrorSchema",
    "DeliveryItemSchema",
    "HookAnswerSchema",
    "ProblemSchema",
]

# README "What the sender is answered", plus `partial` (batches) and `dry_run` (`?dry_run=1`).
ANSWER_OUTCOMES = (
    "canceled",
    "already_canceled",
    "ignored",
    "queued",
    "not_found",
    "failed",
    "partial",
    "dry_run",
)
# One delivery's outcome; `would_cancel` appears only in dry-run answers.
ITEM_OUTCOMES = (
    "canceled",
    "already_canceled",
    "ignored",
    "queued",
    "not_found",
    "failed",
    "would_cancel",
)


def _errors(description: str) -> fields.Dict:
    return fields.Dict(
        keys=fields.String(),
        values=fields.List(fields.String()),
        metadata={"description": description},
    )


class DeliveryErrorSchema(Schema):
    """Why one delivery of a batch did not cancel."""

    detail = fields.String(metadata={"description": "what went wrong, for a person"})
    reason = fields.String(metadata={"description": "machine-readable cause, e.g. `timeout`"})
    errors = _errors("field path -> messages (mapping errors, MeetBit validation)")


class DeliveryItemSchema(Schema):
    """One delivery (one cancel command) in an answer's `deliveries` list."""

    id = fields.String(metadata={"description": "delivery id, `dlv_...`"})
    status = fields.String(
        validate=validate.OneOf(STATUSES), metadata={"description": "delivery state in the ledger"}
    )
    outcome = fields.String(
        required=True,
        validate=validate.OneOf(ITEM_OUTCOMES),
        metadata={"description": "what happened to this cancel"},
    )
    calendar_id = fields.Integer(allow_none=True, metadata={"description": "MeetBit calendar"})
    event_id = fields.Integer(allow_none=True, metadata={"description": "MeetBit event"})
    url = fields.String(metadata={"description": "the delivery in the admin API"})
    event = fields.Nested(
        EventSchema, metadata={"description": "the MeetBit Event (batches: each item its own)"}
    )
    error = fields.Nested(DeliveryErrorSchema, metadata={"description": "batches: why it failed"})
    reason = fields.String(
        allow_none=True, metadata={"description": "why it was ignored (`when` was false)"}
    )
    idempotency_key = fields.String(metadata={"description": "dry run: the key it would get"})
    note = fields.String(metadata={"description": "dry run: the cancel note it would send"})


class HookAnswerSchema(Schema):
    """A 200 or 202 answer to a webhook."""

    outcome = fields.String(
        required=True,
        validate=validate.OneOf(ANSWER_OUTCOMES),
        metadata={"description": "the webhook's overall outcome"},
    )
    delivery_id = fields.String(metadata={"description": "single delivery: its id"})
    event = fields.Nested(
        EventSchema,
        allow_none=True,
        metadata={"description": "single delivery: the MeetBit Event exactly as returned"},
    )
    reason = fields.String(
        allow_none=True, metadata={"description": "`ignored`: why the route's `when` was false"}
    )
    deliveries = fields.List(
        fields.Nested(DeliveryItemSchema),
        required=True,
        metadata={"description": "every delivery the webhook became"},
    )


class ProblemSchema(Schema):
    """An `application/problem+json` error (RFC 9457)."""

    type = fields.String(
        required=True, metadata={"description": "`urn:meetbit-bridge:problem:<slug>`"}
    )
    title = fields.String(required=True, metadata={"description": "short, per type"})
    status = fields.Integer(required=True, metadata={"description": "the HTTP status"})
    detail = fields.String(metadata={"description": "this occurrence, for a person"})
    errors = _errors("field path -> messages, where the input is at fault")
    delivery_id = fields.String(metadata={"description": "the delivery concerned, if any"})
    reason = fields.String(
        metadata={"description": "machine-readable cause, e.g. `signature_mismatch`"}
    )
    outcome = fields.String(
        validate=validate.OneOf(ANSWER_OUTCOMES),
        metadata={"description": "for webhooks that were recorded: their outcome"},
    )
    deliveries = fields.List(
        fields.Nested(DeliveryItemSchema),
        metadata={"description": "for webhooks that were recorded: their deliveries"},
    )
    request_id = fields.String(
        metadata={"description": "this request's X-Request-Id, as logged (and sent to MeetBit)"}
    )
