"""Typed errors for every way a MeetBit call can end badly, each with a machine-readable reason.

The class says what happened (the dispatcher decides by class whether to retry); `sent` says
whether the request may have reached MeetBit (and so may have taken effect), which decides how
a caller treats a retry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from bridge.meetbit.ratelimit import RateLimitInfo

__all__ = [
    "MeetBitAuthError",
    "MeetBitBadResponse",
    "MeetBitConnectionError",
    "MeetBitError",
    "MeetBitLate",
    "MeetBitNotFound",
    "MeetBitPermissionError",
    "MeetBitRateLimited",
    "MeetBitServerError",
    "MeetBitTimeout",
    "MeetBitValidationError",
]


class MeetBitError(Exception):
    """Base of every MeetBit failure. Messages never carry the access key id or secret."""

    reason: ClassVar[str] = "meetbit_error"

    def __init__(self, detail: str, *, status: int | None = None, sent: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.sent = sent
        # The answer's rate-limit headers, when MeetBit answered at all.
        self.rate_limit: RateLimitInfo | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.detail!r}, status={self.status!r}, sent={self.sent!r})"


class MeetBitAuthError(MeetBitError):
    """401 with any body but `Access Denied.`: the key id or secret is wrong or missing.

    Retried like a transient failure: an operator fixes the keys and the next attempt succeeds.
    """

    reason = "bad_credentials"


class MeetBitPermissionError(MeetBitError):
    """401 `Access Denied.`: the key's Role lacks `events.delete.*`."""

    reason = "permission_denied"


class MeetBitNotFound(MeetBitError):
    """404: no such event in that calendar, or (undocumented) an event already canceled."""

    reason = "not_found"


class MeetBitValidationError(MeetBitError):
    """400 with MeetBit's `{message, errors}` JSON body."""

    reason = "invalid_request"

    def __init__(
        self,
        detail: str,
        *,
        errors: Mapping[str, Sequence[str]] | None = None,
        status: int | None = 400,
        sent: bool = True,
    ) -> None:
        super().__init__(detail, status=status, sent=sent)
        self.errors: dict[str, list[str]] = {k: list(v) for k, v in (errors or {}).items()}


class MeetBitRateLimited(MeetBitError):
    """429: wait `retry_after` seconds before any further call with this key."""

    reason = "rate_limited"

    def __init__(
        self,
        detail: str,
        *,
        retry_after: float = 1.0,
        status: int | None = 429,
        sent: bool = True,
    ) -> None:
        super().__init__(detail, status=status, sent=sent)
        self.retry_after = retry_after


class MeetBitServerError(MeetBitError):
    """5xx, or any status the Cancel Event page does not document."""

    reason = "server_error"


class MeetBitTimeout(MeetBitError):
    """Connect timeout (`sent` False) or read timeout (`sent` True: the cancel may have run)."""

    reason = "timeout"


class MeetBitConnectionError(MeetBitError):
    """Refused, reset or unresolvable; `sent` True only when the break came after the request."""

    reason = "connection_error"


class MeetBitBadResponse(MeetBitError):
    """A 2xx whose body is not the documented `{message, data: Event}` JSON envelope."""

    reason = "bad_response"

    def __init__(self, detail: str, *, status: int | None = None, sent: bool = True) -> None:
        super().__init__(detail, status=status, sent=sent)


class MeetBitLate(MeetBitError):
    """Nothing was sent: the request could not leave by the caller's `send_by` (its rate slot
    had passed, e.g. the process stalled), so it was not sent bunched with later calls."""

    reason = "late"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, status=None, sent=False)
