"""The sizes the ledger's columns hold, named once: the validators (route file, mapping, admin
API, CLI, MeetBit's webhooks) and the table definitions both read them, so nothing that passes
validation can overflow a column on either database."""

from __future__ import annotations

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
# A delivery id: `dlv_` + token_urlsafe(16) today, any URL-safe text up to the column.
MAX_DELIVERY_ID = 40
# A route name (`[a-z0-9][a-z0-9_-]{0,63}`), well within its column.
MAX_ROUTE_NAME = 64
