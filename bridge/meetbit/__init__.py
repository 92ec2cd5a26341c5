"""MeetBit's Public API as the bridge sees it: the one client (over its transport), its typed
errors and schemas."""

from __future__ import annotations

from bridge.meetbit.client import API_PREFIX, CanceledEvent, MeetBitClient, parse_retry_after
from bridge.meetbit.errors import (
    MeetBitAuthError,
    MeetBitBadResponse,
    MeetBitConnectionError,
    MeetBitError,
    MeetBitLate,
    MeetBitNotFound,
    MeetBitPermissionError,
    MeetBitRateLimited,
    MeetBitServerError,
    MeetBitTimeout,
    MeetBitValidationError,
)
from bridge.meetbit.ratelimit import RateLimitInfo
from bridge.meetbit.schemas import (
    CANCEL_NOTE_MAX,
    AttendeeSchema,
    CancelRequestSchema,
    EventEnvelopeSchema,
    EventSchema,
    OnlineConferenceSchema,
)

__all__ = [
    "API_PREFIX",
    "CANCEL_NOTE_MAX",
    "AttendeeSchema",
    "CancelRequestSchema",
    "CanceledEvent",
    "EventEnvelopeSchema",
    "EventSchema",
    "MeetBitAuthError",
    "MeetBitBadResponse",
    "MeetBitClient",
    "MeetBitConnectionError",
    "MeetBitError",
    "MeetBitLate",
    "MeetBitNotFound",
    "MeetBitPermissionError",
    "MeetBitRateLimited",
    "MeetBitServerError",
    "MeetBitTimeout",
    "MeetBitValidationError",
    "OnlineConferenceSchema",
    "RateLimitInfo",
    "parse_retry_after",
]
