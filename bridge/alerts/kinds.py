"""Every alert kind, declared once: its name (the JSON `kind`), what its message says and the
console page it links to. A new kind is one more `AlertKind` in `KINDS` (and a call to
`Alerter.notify(name)` where it happens)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AlertKind:
    name: str
    # `{count}` is how many times it happened since the previous message of this kind.
    text: str
    # The console page that shows it, relative to the bridge's public origin.
    path: str


KINDS: dict[str, AlertKind] = {
    kind.name: kind
    for kind in (
        AlertKind(
            "dead",
            "meetbit-bridge: {count} delivery(ies) became dead: the worker gave up on them. "
            "Replay them once MeetBit answers again.",
            "/console/deliveries?status=dead",
        ),
        AlertKind(
            "meetbit_auth",
            "meetbit-bridge: MeetBit rejected the bridge's access key ({count} call(s)): check "
            "MEETBIT_ACCESS_KEY_ID / MEETBIT_ACCESS_KEY_SECRET and the key's events.delete "
            "permission. Cancels are retried meanwhile.",
            "/console",
        ),
        AlertKind(
            "writeback_auth",
            "meetbit-bridge: a CRM refused the credential of a route's write_back ({count} "
            "time(s)): check its token and scopes. The cancels are not affected; the notes are "
            "retried and then dead.",
            "/console/deliveries",
        ),
        AlertKind(
            "paused",
            "meetbit-bridge: MeetBit answered 429 and paused every call for over a minute "
            "({count} time(s)); deliveries wait and are retried after it.",
            "/console",
        ),
    )
}


def message(kind: str, count: int, origin: str | None) -> dict[str, Any]:
    """The JSON posted: `text` (which makes it a Slack message), `kind`, `count`, `url` (the
    console page; absolute when the bridge's public origin is known)."""
    found = KINDS[kind]
    return {
        "text": found.text.format(count=count),
        "kind": found.name,
        "count": count,
        "url": (origin or "") + found.path,
    }
