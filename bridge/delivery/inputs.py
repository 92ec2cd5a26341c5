"""What an operator's request may hold before it reaches the ledger, for the admin API and the
command line alike: times that convert to UTC, delivery ids of the ledger's shape, link keys,
route names and paging cursors its columns can hold. Checked here, so SQLite (which stores
almost anything) and PostgreSQL (which refuses NUL, over-long text and numbers past BIGINT)
give the same answer, and neither a 500.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from bridge.core.limits import (
    MAX_DELIVERY_ID,
    MAX_ID,
    MAX_LINK_KEY,
    MAX_ROUTE_NAME,
    MIN_BIGINT,
    UNSAFE_KEY_CHARS,
)
from bridge.errors import InvalidPath
from bridge.jsonbody import unstorable
from bridge.ledger.pagination import cursor_time, decode_cursor

# `since` as an age: `30m`, `2h`, `7d`; at most a century back.
MAX_AGE_DAYS = 36500
# Every `since` lies in these bounds once in UTC: a century before any age reaches, and the
# last moment a datetime can hold. Outside them a conversion to UTC overflows.
SINCE_MIN = datetime(1900, 1, 1, tzinfo=UTC)
SINCE_MAX = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
SINCE_RANGE = "must lie between 1900-01-01 and 9999-12-31 (UTC)"

_AGE = re.compile(r"^(\d+)\s*([smhd])$")
_AGE_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# `+01:00` in an unencoded query string arrives as ` 01:00`; only after a time of day.
_OFFSET_AS_SPACE = re.compile(r"(\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}(?::?\d{2})?)$")
# `dlv_` + token_urlsafe(16) today; any URL-safe id the column (40) holds may exist.
_DELIVERY_ID = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_DELIVERY_ID}}}")
# What `encode_cursor` writes: unpadded URL-safe base64 (b64decode would skip anything else).
_CURSOR_TEXT = re.compile(r"[A-Za-z0-9_-]+")


def parse_since(text: str, *, now: datetime | None = None) -> datetime:
    """An ISO 8601 date or date-time (UTC when it has no offset) or an age like `2h`, in UTC;
    ValueError says which forms and which range are accepted."""
    text = text.strip()
    age = _AGE.match(text)
    if age:
        seconds = int(age.group(1)) * _AGE_SECONDS[age.group(2)]
        if seconds > MAX_AGE_DAYS * 86400:
            raise ValueError(f"an age goes back at most {MAX_AGE_DAYS}d")
        return (now or datetime.now(UTC)) - timedelta(seconds=seconds)
    try:
        moment = datetime.fromisoformat(_OFFSET_AS_SPACE.sub(r"\1+\2", text))
    except ValueError:
        raise ValueError(
            f"{text[:40]!r} is neither ISO 8601 (2026-11-01T09:00:00Z) nor an age (30m, 2h, 7d)"
        ) from None
    return in_utc(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def in_utc(moment: datetime) -> datetime:
    """`moment` in UTC, within SINCE_MIN..SINCE_MAX; ValueError outside them."""
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+14:00 is before datetime.min in UTC
        raise ValueError(SINCE_RANGE) from None
    if not SINCE_MIN <= utc <= SINCE_MAX:
        raise ValueError(SINCE_RANGE)
    return utc


def is_delivery_id(text: str) -> bool:
    """Whether a delivery could have this id; any other is simply not found."""
    return _DELIVERY_ID.fullmatch(text) is not None


def link_key(key: str) -> str:
    """The key as stored: emails stripped and lower-cased, as the mapper looks them up
    (`target.customer_email`); other keys as given. 1 to MAX_LINK_KEY characters, none of
    them a control character, NUL or an unpaired surrogate."""
    stored = key.strip().lower() if "@" in key else key
    problem = None
    if not stored or len(stored) > MAX_LINK_KEY:
        problem = f"must be 1 to {MAX_LINK_KEY} characters"
    elif UNSAFE_KEY_CHARS.search(stored):
        problem = "must not hold NUL, control characters or unpaired surrogates"
    if problem:
        raise InvalidPath("invalid link key", errors={"key": [problem]})
    return stored


def route_errors(route: str) -> list[str]:
    """Why no route can have this name (the route file's rule), or nothing."""
    from bridge.delivery.routes import ROUTE_NAME_RE  # the route file's loader: only when filtering

    if re.fullmatch(ROUTE_NAME_RE, route):
        return []
    return [f"must be a route name: a-z, 0-9, '-' and '_', at most {MAX_ROUTE_NAME} characters"]


def search_errors(text: str) -> list[str]:
    """Why the deliveries' search cannot look for `text` (it compares it with columns that
    hold at most a link key's length), or nothing."""
    if len(text.strip()) > MAX_LINK_KEY:
        return [f"must be at most {MAX_LINK_KEY} characters"]
    if UNSAFE_KEY_CHARS.search(text):
        return ["must not hold NUL, control characters or unpaired surrogates"]
    return []


def delivery_cursor_ok(cursor: str) -> bool:
    """Whether `cursor` is one the deliveries listing could have written: a time in range
    and a delivery id (the ledger would overflow or refuse anything else)."""
    if not _CURSOR_TEXT.fullmatch(cursor):
        return False
    try:
        stamp, last_id = decode_cursor(cursor, (str, str))
        in_utc(cursor_time(stamp))
    except ValueError:
        return False
    return is_delivery_id(last_id)


def link_cursor_ok(cursor: str) -> bool:
    """Whether `cursor` is one the links listing could have written: a key and two ids the
    ledger's columns hold (a key stored before keys were checked still pages on)."""
    if not _CURSOR_TEXT.fullmatch(cursor):
        return False
    try:
        key, calendar_id, event_id = decode_cursor(cursor, (str, int, int))
    except ValueError:
        return False
    ids_fit = all(MIN_BIGINT <= value <= MAX_ID for value in (calendar_id, event_id))
    return ids_fit and 0 < len(key) <= MAX_LINK_KEY and not unstorable(key)
