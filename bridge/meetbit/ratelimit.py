"""MeetBit's rate-limit headers, read from any answer (429s included) in either form.

- draft-06 style, which MeetBit documents: `RateLimit-Limit: 5`, `RateLimit-Remaining: 3`,
  `RateLimit-Reset: 1` (seconds). An older list form (`5, 5;w=1`) is read for its first item.
- the current IETF draft: `RateLimit: "p";r=3;t=1` with `RateLimit-Policy: "p";q=5;w=1`
  (Structured Field lists; several policies may be listed: the tightest counts).
- `Retry-After`: delta-seconds or an HTTP-date.

Anything malformed or absurd is dropped, field by field, never guessed: a header this module
cannot read gives None for that field, so the limiter keeps what it knew. Nothing here trusts a
value beyond a sane bound; the configured ceiling is applied by the limiter.
"""

from __future__ import annotations

import email.utils
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC

__all__ = ["MAX_SECONDS", "RateLimitInfo", "read_retry_after"]

# Longer header values are not parsed at all (a real one is a few dozen characters).
MAX_HEADER = 512
# Beyond these a value is absurd: no API holds a client for more than an hour per answer, and
# no per-window quota of MeetBit's is anywhere near a million.
MAX_SECONDS = 3600.0
MAX_COUNT = 1_000_000
MAX_WINDOW = 86_400
_INTEGER = re.compile(r"^[0-9]{1,7}$")
_DELTA = re.compile(r"^[0-9]{1,10}(?:\.[0-9]{1,6})?$")
_KEY = re.compile(r"^[a-z*][a-z0-9_.*-]{0,63}$")
_TOKEN = re.compile(r"^[A-Za-z*][A-Za-z0-9!#$%&'*+.^_`|~:/-]{0,63}$")


@dataclass(frozen=True)
class RateLimitInfo:
    """What one answer's headers say (None where absent, malformed or absurd): `limit` calls
    per `window` seconds (None: not said; MeetBit's is one second), `remaining` calls in the
    current window, `reset` seconds until it ends, `retry_after` seconds to wait."""

    limit: int | None = None
    remaining: int | None = None
    reset: float | None = None
    window: float | None = None
    retry_after: float | None = None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str], *, now: float | None = None) -> RateLimitInfo:
        info = _current_draft(headers) or _draft_06(headers)
        retry_after = read_retry_after(headers.get("Retry-After"), now=now)
        return cls(
            limit=info.limit,
            remaining=info.remaining,
            reset=info.reset,
            window=info.window,
            retry_after=retry_after,
        )

    @property
    def empty(self) -> bool:
        return self == RateLimitInfo()


def _text(value: str | None) -> str | None:
    if value is None or len(value) > MAX_HEADER:
        return None
    text = value.strip()
    return text if text.isascii() and text.isprintable() else None


def _count(value: str | None) -> int | None:
    text = _text(value)
    if text is None or not _INTEGER.match(text):
        return None
    number = int(text)
    return number if number <= MAX_COUNT else None


def _seconds(value: str | None) -> float | None:
    number = _count(value)
    return float(number) if number is not None and number <= MAX_SECONDS else None


def _draft_06(headers: Mapping[str, str]) -> RateLimitInfo:
    limit, window = None, None
    raw = _text(headers.get("RateLimit-Limit"))
    if raw is not None:
        # `5` or the older list form `5, 5;w=1, 1000;w=3600`: the first item is the limit now.
        first = raw.split(",", 1)[0]
        number, *params = (p.strip() for p in first.split(";"))
        limit = _count(number)
        for param in params:
            key, _, val = param.partition("=")
            if key.strip() == "w":
                w = _count(val)
                window = float(w) if w is not None and 0 < w <= MAX_WINDOW else None
                if window is None:
                    limit = None  # a limit over an unreadable window says nothing
    if limit == 0:
        limit = None
    return RateLimitInfo(
        limit=limit,
        remaining=_count(headers.get("RateLimit-Remaining")),
        reset=_seconds(headers.get("RateLimit-Reset")),
        window=window,
    )


def _sf_list(value: str | None) -> list[tuple[str, dict[str, int]]] | None:
    """A Structured Field list of string/token items with integer parameters (RFC 8941),
    `"name";a=1;b=2, "other";a=3`, as (name, params); None if any part is malformed. Only
    what these headers use is accepted: no inner lists, no non-integer parameter values."""
    text = _text(value)
    if not text:
        return None
    items: list[tuple[str, dict[str, int]]] = []
    for member in _split_outside_quotes(text, ","):
        parts = _split_outside_quotes(member.strip(), ";")
        head = parts[0].strip()
        if len(head) >= 2 and head[0] == '"' and head[-1] == '"':
            name = head[1:-1]
            if '"' in name or "\\" in name:
                return None
        elif _TOKEN.match(head):
            name = head
        else:
            return None
        params: dict[str, int] = {}
        for param in parts[1:]:
            key, eq, val = param.strip().partition("=")
            number = _count(val.strip()) if eq else None
            if not _KEY.match(key) or number is None:
                return None
            params[key] = number
        items.append((name, params))
    return items or None


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    out: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            out.append("".join(current))
            current = []
        else:
            current.append(ch)
    out.append("".join(current))
    return out


def _current_draft(headers: Mapping[str, str]) -> RateLimitInfo | None:
    """`RateLimit` + `RateLimit-Policy`: the tightest policy's figures. None when neither
    header is readable (the draft-06 form is tried then)."""
    policies = _sf_list(headers.get("RateLimit-Policy")) or []
    current = _sf_list(headers.get("RateLimit")) or []
    if not policies and not current:
        return None
    # The lowest quota per second among the policies, each over its own window (w defaults
    # to one second, MeetBit's).
    limit, window = None, None
    best = math.inf
    for _name, params in policies:
        q, w = params.get("q"), params.get("w", 1)
        if q is None or q == 0 or not 0 < w <= MAX_WINDOW:
            continue
        if q / w < best:
            best, limit, window = q / w, q, float(w)
    # The policy with the fewest calls left decides the hold.
    remaining, reset = None, None
    for _name, params in current:
        r = params.get("r")
        if r is None:
            continue
        if remaining is None or r < remaining:
            remaining = r
            t = params.get("t")
            reset = float(t) if t is not None and t <= MAX_SECONDS else None
    return RateLimitInfo(limit=limit, remaining=remaining, reset=reset, window=window)


def read_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from `Retry-After` (delta-seconds or an HTTP-date, RFC 9110); None when
    absent or malformed. A wait beyond MAX_SECONDS is cut to it: a server asking for a day
    surely wants a long pause, and an hour is the most the bridge holds for one answer."""
    text = _text(value)
    if not text:
        return None
    if _DELTA.match(text):
        seconds = float(text)
    else:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = max(0.0, when.timestamp() - (time.time() if now is None else now))
    if not math.isfinite(seconds):
        return None
    return min(seconds, MAX_SECONDS)
