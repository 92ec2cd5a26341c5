"""What the operator console reads, as services the web console and the command line share:
one delivery's whole story (`delivery_detail`) and the overview figures (`overview`). The log
itself is `bridge.delivery.admin.list_deliveries` (with `DeliveryQuery.search`); replays are
`bridge.delivery.admin.replay` (one) and `bridge.delivery.bulk` (many, with progress).

Everything is read from the ledger, so any process shows the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bridge.core.rate import effective_rate
from bridge.delivery import answers
from bridge.delivery.admin import REPLAYABLE, get_delivery
from bridge.delivery.dispatch import RATE_KEY, Account
from bridge.ledger import Delivery, RequestRecord, WriteBack

if TYPE_CHECKING:
    from bridge.delivery.service import Bridge

# The overview's windows, seconds back from now.
LAST_HOUR = 3600.0
LAST_DAY = 86400.0
WINDOWS = (LAST_HOUR, LAST_DAY)


@dataclass(frozen=True)
class AttemptView:
    """One entry of a delivery's timeline: a MeetBit call (`kind` `call`) or a re-run that
    mapped the stored request again (`remap`, no call)."""

    number: int
    kind: str
    process: str  # `web host:pid`, `worker host:pid`, `cli host:pid`
    role: str  # `web`, `worker` or `cli`: the first word of `process`
    started_at: datetime
    finished_at: datetime
    latency_ms: float
    sent: bool  # the request may have reached MeetBit
    meetbit_status: int | None
    outcome: str | None
    error_kind: str | None
    error: str | None


@dataclass(frozen=True)
class MappingView:
    """How the route maps a webhook today (the route file as loaded): its `when`, target and
    note templates as written. `configured` is False when the route is gone from the file."""

    route: str
    configured: bool
    preset: str | None = None
    respond: str | None = None
    when: str | None = None
    target: dict[str, str] = field(default_factory=dict)
    note: str | None = None


@dataclass(frozen=True)
class DeliveryDetail:
    """Everything the console's delivery page shows.

    `request` is the webhook as received, credentials redacted (None for deliveries recorded
    before requests were kept); `request.answer_status`/`answer_body` is what the sender got.
    `siblings`: the other deliveries of the same request (a batch, an email's several events).
    `event`: the MeetBit event as MeetBit returned it. `outcome`: the contract's outcome word.
    """

    delivery: Delivery
    outcome: str
    attempts: list[AttemptView]
    request: RequestRecord | None
    mapping: MappingView
    siblings: list[Delivery]
    event: dict[str, Any] | None
    replayable: bool
    write_backs: list[WriteBack] = field(default_factory=list)


def delivery_detail(bridge: Bridge, delivery_id: str) -> DeliveryDetail:
    """The console's delivery page: call this with the id from the URL; an unknown id raises
    `NotFound` (404)."""
    ledger = bridge.ledger
    delivery = get_delivery(ledger, delivery_id)
    request = None
    siblings: list[Delivery] = []
    if delivery.request_id is not None:
        request = ledger.requests.get(delivery.request_id)
        siblings = [
            d for d in ledger.queries.of_request(delivery.request_id) if d.id != delivery.id
        ]
    return DeliveryDetail(
        delivery=delivery,
        outcome=answers.shown_outcome(delivery, worker_alive=bridge.worker_alive()),
        attempts=[_attempt(row) for row in ledger.attempts.history(delivery.id)],
        request=request,
        mapping=mapping_of(bridge, delivery.route),
        siblings=siblings,
        event=delivery.event,
        replayable=delivery.status in REPLAYABLE,
        write_backs=ledger.write_backs.for_delivery(delivery.id),
    )


def _attempt(row: dict[str, Any]) -> AttemptView:
    started, finished = row["started_at"], row["finished_at"]
    process = str(row["process"])
    return AttemptView(
        number=row["number"],
        kind=row["kind"],
        process=process,
        role=process.split(" ", 1)[0],
        started_at=started,
        finished_at=finished,
        latency_ms=round((finished - started).total_seconds() * 1000, 1),
        sent=bool(row["sent"]),
        meetbit_status=row["meetbit_status"],
        outcome=row["outcome"],
        error_kind=row["error_kind"],
        error=row["error"],
    )


def mapping_of(bridge: Bridge, route_name: str) -> MappingView:
    """The route's mapping as the route file says it today (for a delivery's page and the
    routes page)."""
    route = bridge.routes.get(route_name)
    if route is None:
        return MappingView(route=route_name, configured=False)
    m = route.mapping
    target = {
        name: template.source
        for name, template in (
            ("calendar_id", m.calendar_id),
            ("event_id", m.event_id),
            ("customer_email", m.customer_email),
            ("link", m.link),
        )
        if template is not None
    }
    return MappingView(
        route=route.name,
        configured=True,
        preset=route.preset,
        respond=route.respond,
        when=None if m.when is None else m.when.source,
        target=target,
        note=m.note.source,
    )


@dataclass(frozen=True)
class WindowCounts:
    """Deliveries created in one window, per status and per outcome (every status and outcome
    is present, zeros included)."""

    seconds: float
    by_status: dict[str, int]
    by_outcome: dict[str, int]


@dataclass(frozen=True)
class AccountRate:
    """One MeetBit account's limiter as the ledger holds it: its ceiling (`auto` or calls per
    second), the rate it spends now (the ceiling, lowered by MeetBit's headers) and the end of
    a hold in force (a 429, `RateLimit-Remaining: 0`; None: not held)."""

    name: str
    ceiling: str
    rate: float
    paused_until: datetime | None


def account_rate(bridge: Bridge, account: Account, at: datetime) -> AccountRate:
    state = bridge.ledger.rate.state(account.key)
    held = state.paused_until > at.timestamp()
    return AccountRate(
        name=account.name,
        ceiling="auto" if account.ceiling is None else f"{account.ceiling:g}/s",
        rate=effective_rate(account.ceiling, state.heard),
        paused_until=datetime.fromtimestamp(state.paused_until, UTC) if held else None,
    )


@dataclass(frozen=True)
class OverviewFigures:
    """The console's overview. `windows`: the last hour and the last 24 hours. `dead`: every
    dead delivery (link it to `/console/deliveries?status=dead`). `queue_depth`: deliveries
    waiting for an attempt; `oldest_queued_age`: seconds since the oldest of them was
    recorded (None: none waits). `rate_limit`: MeetBit calls per second allowed;
    `paused_until`: the end of a 429 pause in force (None: not paused): both for the default
    account (the `MEETBIT_*` variables); `accounts`: every account's, the default first.
    `last_heartbeat`: the newest worker heartbeat (None: no worker seen); `worker_alive`
    within 15 s."""

    at: datetime
    windows: list[WindowCounts]
    dead: int
    queue_depth: int
    oldest_queued_age: float | None
    rate_limit: float
    paused_until: datetime | None
    last_heartbeat: datetime | None
    worker_alive: bool
    accounts: list[AccountRate] = field(default_factory=list)


def overview(bridge: Bridge) -> OverviewFigures:
    """The console's overview page: call this once per page view (one read transaction)."""
    figures = bridge.ledger.queries.overview(windows=WINDOWS, rate_key=RATE_KEY)
    oldest = None
    if figures.oldest_queued is not None:
        oldest = max(0.0, (figures.at - figures.oldest_queued).total_seconds())
    return OverviewFigures(
        at=figures.at,
        windows=[
            WindowCounts(window, counts.by_status, counts.by_outcome)
            for window, counts in figures.windows.items()
        ],
        dead=figures.dead,
        queue_depth=figures.queue_depth,
        oldest_queued_age=oldest,
        # The default account's ceiling as MeetBit's headers have lowered it (auto: heard).
        rate_limit=bridge.ledger.rate.rate(RATE_KEY, bridge.settings.meetbit_rate_limit),
        paused_until=figures.paused_until,
        last_heartbeat=figures.last_heartbeat,
        worker_alive=bridge.worker_alive(),
        accounts=[account_rate(bridge, a, figures.at) for a in bridge.dispatcher.accounts.values()],
    )


__all__ = [
    "AccountRate",
    "AttemptView",
    "DeliveryDetail",
    "MappingView",
    "OverviewFigures",
    "WindowCounts",
    "delivery_detail",
    "mapping_of",
    "overview",
]
