"""The sizes the ledger's columns hold, named once: the validators (route file, mapping, admin
API, CLI, MeetBit's webhooks) and the table definitions both read them, so nothing that passes
validation can overflow a column on either database. And what a key may hold, with the one
way a key that may not is made to fit (`bounded_key`)."""

from __future__ import annotations

import hashlib
import re

# MeetBit ids (calendar, event) as a signed BIGINT holds them; MeetBit's own ids start at 1.
MAX_ID = 2**63 - 1
MIN_BIGINT = -(2**63)
# MeetBit's cancel note: 1 to 255 characters (the cancel endpoint's documented bound).
NOTE_MAX = 255
# A link key: an email address at its longest legal length, or any key up to it.
MAX_LINK_KEY = 320
# A sender's idempotency key and MeetBit's X-Webhook-Id, kept as given up to this length and
# stored as their SHA-256 beyond it.
MAX_KEY_LENGTH = 200
# Characters a key may not carry as is: C0/C1 controls (NUL, CR, LF, ESC...), DEL, the Unicode
# line and paragraph separators, unpaired surrogates. Databases, logs and headers choke on them.
UNSAFE_KEY_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# A delivery id: `dlv_` + token_urlsafe(16) today, any URL-safe text up to the column.
MAX_DELIVERY_ID = 40
# A write-back's record id (a deal, ticket or Salesforce id) as rendered by its template.
MAX_RECORD = 200
# An X-Request-Id a client may choose (longer or other characters: the bridge makes its own).
MAX_REQUEST_ID = 128
# A route name (`[a-z0-9][a-z0-9_-]{0,63}`), well within its column.
MAX_ROUTE_NAME = 64


def bounded_key(key: str) -> str:
    """A key chosen outside the bridge (a sender's idempotency key, MeetBit's webhook id) as
    is, or `sha256:<hex>` of it when it is longer than MAX_KEY_LENGTH or holds unsafe
    characters. Hashing, not refusing: a retry must still match the first delivery, and the
    same raw key always gives the same stored key."""
    if len(key) <= MAX_KEY_LENGTH and not UNSAFE_KEY_CHARS.search(key):
        return key
    # surrogatepass: distinct raw keys keep distinct hashes, even with unpaired surrogates.
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
