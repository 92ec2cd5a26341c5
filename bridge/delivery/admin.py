"""Admin operations shared by the admin API and the command line: listing, showing and replaying
deliveries, the link store, and the offline preview of a webhook. One set of filters, limits and
key checks (`bridge.delivery.inputs`), so `GET /admin/...` and `meetbit-bridge ...` cannot drift
apart. The ledger's own upkeep (open, upgrade, probe, purge) is `bridge.delivery.maintenance`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from bridge.core.limits import MAX_ID, MAX_LINK_KEY
from bridge.delivery import answers, inputs
from bridge.delivery.answers import Answer
from bridge.delivery.inputs import MAX_AGE_DAYS, link_key, parse_since
from bridge.errors import InFlight, InvalidQuery, NotFound
from bridge.ledger import (
    FINAL_OUTCOMES,
    STATUSES,
    Delivery,
    Ledger,
    Link,
    NewDelivery,
    WriteBack,
)

if TYPE_CHECKING:
    from bridge.delivery.routes import Route
    from bridge.delivery.service import Bridge
    from bridge.sources import InboundRequest, Parsed

__all__ = [
    "MAX_AGE_DAYS",
    "MAX_ID",
    "MAX_LINK_KEY",
    "OUTCOMES",
    "PAGE_DEFAULT",
    "PAGE_MAX",
    "REPLAYABLE",
    "STATES",
    "DeliveryQuery",
    "Page",
    "PageRequest",
    "link_key",
    "parse_since",
]

T = TypeVar("T")

# One page of deliveries or links, in the API and on the command line alike.
PAGE_DEFAULT = 50
PAGE_MAX = 200
# `state=`: final = no further MeetBit call; retrying = failed transiently, the worker retries.
STATES = ("final", "retrying")
OUTCOMES = tuple(sorted(FINAL_OUTCOMES | {"failed"}))
REPLAYABLE = ("failed", "dead")
# Replay outcomes after which an operator has something to look at.
REPLAY_FAILURES = ("failed", "not_found", "unknown")
_CURSOR_HELP = "not a cursor of this listing; pass `next_cursor` of the previous page as given"


@dataclass(frozen=True)
class DeliveryQuery:
    """Which deliveries to list (newest first) or replay, and which page."""

    status: str | None = None
    route: str | None = None
    since: datetime | None = None
    outcome: str | None = None
    state: str | None = None
    cursor: str | None = None
    limit: int = PAGE_DEFAULT
    # A delivery id, idempotency key, calendar or event id, or an email (through the links).
    search: str | None = None


@dataclass(frozen=True)
class PageRequest:
    cursor: str | None = None
    limit: int = PAGE_DEFAULT


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def _check_query(query: DeliveryQuery) -> None:
    errors: dict[str, list[str]] = {}
    for name, value, allowed in (
        ("status", query.status, STATUSES),
        ("outcome", query.outcome, OUTCOMES),
        ("state", query.state, STATES),
    ):
        if value is not None and value not in allowed:
            errors[name] = [f"must be one of: {', '.join(allowed)}"]
    if query.route is not None and (route := inputs.route_errors(query.route)):
        errors["route"] = route
    if query.since is not None:
        try:
            inputs.in_utc(query.since)
        except ValueError as exc:
            errors["since"] = [str(exc)]
    if query.cursor is not None and not inputs.delivery_cursor_ok(query.cursor):
        errors["cursor"] = [_CURSOR_HELP]
    if query.search is not None and (search := inputs.search_errors(query.search)):
        errors["search"] = search
    errors.update(_limit_errors(query.limit))
    if errors:
        raise InvalidQuery("invalid delivery filters", errors=errors)


def _limit_errors(limit: int) -> dict[str, list[str]]:
    if 1 <= limit <= PAGE_MAX:
        return {}
    return {"limit": [f"must be between 1 and {PAGE_MAX}"]}


def list_deliveries(ledger: Ledger, query: DeliveryQuery) -> Page[Delivery]:
    """One page of deliveries matching `query`, newest first. The console's log calls this:
    filters (status, route, outcome, since, state), `search` and the cursor as the admin API
    takes them; a bad one raises `InvalidQuery` naming it."""
    _check_query(query)
    search = query.search.strip() if query.search is not None else None
    try:
        items, cursor = ledger.queries.deliveries(
            status=query.status,
            route=query.route,
            since=query.since,
            outcome=query.outcome,
            state=query.state,
            cursor=query.cursor,
            limit=query.limit,
            search=search or None,
        )
    except ValueError as exc:  # filters are checked above: only the cursor's content is left
        raise InvalidQuery("invalid delivery filters", errors={"cursor": [_CURSOR_HELP]}) from exc
    return Page(items, cursor)


def get_delivery(ledger: Ledger, delivery_id: str) -> Delivery:
    delivery = _find(ledger, delivery_id)
    if delivery is None:
        raise NotFound(f"no delivery {delivery_id[:60]!r}")
    return delivery


class DeliveryDetail:
    """A delivery and its write-backs, read as one object by the detail schema."""

    def __init__(self, delivery: Delivery, write_backs: list[WriteBack]) -> None:
        self.delivery = delivery
        self.write_backs = write_backs

    def __getattr__(self, name: str) -> Any:
        return getattr(self.delivery, name)


def get_delivery_detail(ledger: Ledger, delivery_id: str) -> DeliveryDetail:
    delivery = get_delivery(ledger, delivery_id)
    return DeliveryDetail(delivery, ledger.write_backs.for_delivery(delivery.id))


def _find(ledger: Ledger, delivery_id: str) -> Delivery | None:
    # An id no delivery can have (NUL, too long for the column...) is not looked up.
    return ledger.deliveries.get(delivery_id) if inputs.is_delivery_id(delivery_id) else None


# -- replay -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplaySelection:
    deliveries: list[Delivery]
    unknown: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Replayed:
    """One delivery after its replay, and the outcome word shown for it: a contract outcome,
    or `skipped (<status>)` for one that is not failed or dead."""

    delivery: Delivery
    outcome: str
    refused: InFlight | None = None  # queued or in flight: not replayed


@dataclass
class ReplayReport:
    replayed: list[Replayed] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    worker_alive: bool = False

    def counts(self) -> Counter[str]:
        counts = Counter(item.outcome for item in self.replayed)
        if self.unknown:
            counts["unknown"] = len(self.unknown)
        return counts

    def failures(self) -> list[Replayed]:
        return [item for item in self.replayed if item.outcome in REPLAY_FAILURES]

    @property
    def ok(self) -> bool:
        return not self.unknown and not self.failures()

    def answer(self) -> Answer:
        """A single replay answered as a webhook is (errors raised as typed errors)."""
        if self.unknown:
            raise NotFound(f"no delivery {self.unknown[0][:60]!r}")
        (item,) = self.replayed
        if item.refused is not None:
            raise item.refused
        return answers.answer([item.delivery], replayed=False, worker_alive=self.worker_alive)


def select_replay(
    ledger: Ledger, ids: Sequence[str] = (), query: DeliveryQuery | None = None
) -> ReplaySelection:
    """The deliveries named by `ids`, or every failed or dead one matching `query` (its status,
    when given, narrows that), selected in full before any is replayed: a replay changes the
    status being paged."""
    if ids:
        found: list[Delivery] = []
        unknown: list[str] = []
        for delivery_id in dict.fromkeys(ids):
            delivery = _find(ledger, delivery_id)
            if delivery is None:
                unknown.append(delivery_id)
            else:
                found.append(delivery)
        return ReplaySelection(found, unknown)
    query = query or DeliveryQuery()
    selected: list[Delivery] = []
    for status in [query.status] if query.status else REPLAYABLE:
        page = DeliveryQuery(
            status=status,
            route=query.route,
            since=query.since,
            outcome=query.outcome,
            state=query.state,
            limit=PAGE_MAX,
        )
        while True:
            found_page = list_deliveries(ledger, page)
            selected.extend(found_page.items)
            if found_page.next_cursor is None:
                break
            page = replace(page, cursor=found_page.next_cursor)
    return ReplaySelection(selected)


def replay(
    bridge: Bridge,
    selection: ReplaySelection,
    *,
    progress: Callable[[Replayed], None] | None = None,
    by: str = "web",
) -> ReplayReport:
    """Re-run each selected failed or dead delivery now, at the shared MeetBit rate; any other
    is skipped (a final one returned as stored). `progress` is called after each delivery.
    The console's Replay button calls this with one selected delivery and answers
    `.answer()` (or reads `.replayed[0]`); `by` names the process in the attempt rows."""
    report = ReplayReport(unknown=list(selection.unknown), worker_alive=bridge.worker_alive())
    for delivery in selection.deliveries:
        item = replay_one(bridge, delivery, worker_alive=report.worker_alive, by=by)
        report.replayed.append(item)
        if progress is not None:
            progress(item)
    return report


def replay_one(
    bridge: Bridge, delivery: Delivery, *, worker_alive: bool, by: str = "web"
) -> Replayed:
    """Replay one delivery and name its outcome (see `Replayed`)."""
    skipped = f"skipped ({delivery.status})"
    try:
        done = bridge.replay(delivery, by=by)
    except InFlight as exc:
        return Replayed(delivery, skipped, refused=exc)
    if delivery.status not in REPLAYABLE:
        return Replayed(done, skipped)
    return Replayed(done, answers.shown_outcome(done, worker_alive=worker_alive))


# -- links ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyLinks:
    """Every event stored under one key; `created`: whether the last put added one."""

    key: str
    links: list[Link]
    created: bool = False


def put_link(ledger: Ledger, key: str, calendar_id: int, event_id: int) -> KeyLinks:
    key = link_key(key)
    created = ledger.links.put(key, calendar_id, event_id)
    return KeyLinks(key, ledger.links.get(key), created)


def links_of(ledger: Ledger, key: str) -> KeyLinks:
    key = link_key(key)
    links = ledger.links.get(key)
    if not links:
        raise NotFound(f"no link is stored under {key!r}")
    return KeyLinks(key, links)


def delete_links(
    ledger: Ledger, key: str, *, calendar_id: int | None = None, event_id: int | None = None
) -> tuple[str, int]:
    """Forget the key's links (all, or those of one calendar or event): (key, how many)."""
    key = link_key(key)
    removed = ledger.links.delete(key, calendar_id=calendar_id, event_id=event_id)
    if removed == 0:
        raise NotFound(f"no matching link is stored under {key!r}")
    return key, removed


def list_links(ledger: Ledger, page: PageRequest) -> Page[Link]:
    """One page of every link, ordered by key, then calendar and event."""
    errors = _limit_errors(page.limit)
    if page.cursor is not None and not inputs.link_cursor_ok(page.cursor):
        errors["cursor"] = [_CURSOR_HELP]
    if errors:
        raise InvalidQuery("invalid link filters", errors=errors)
    try:
        items, more = ledger.links.list(cursor=page.cursor, limit=page.limit)
    except ValueError as exc:
        raise InvalidQuery("invalid link filters", errors={"cursor": [_CURSOR_HELP]}) from exc
    return Page(items, more)


def all_links(ledger: Ledger) -> list[Link]:
    found: list[Link] = []
    request = PageRequest(limit=PAGE_MAX)
    while True:
        page = list_links(ledger, request)
        found.extend(page.items)
        if page.next_cursor is None:
            return found
        request = replace(request, cursor=page.next_cursor)


# -- preview ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preview:
    """What the intake would record for one item of a webhook. `linked_to`: the key a
    `customer_email` or `link` target looks up; offline its events are unknown, so its one
    row stands for all of them (calendar and event 0)."""

    key: str
    rows: list[NewDelivery]
    linked_to: str | None = None


class _OfflineLinks:
    """The link look-up of a preview, remembering each key asked for. Offline (no `store`)
    each key answers one placeholder (ids 0, which no MeetBit event has); with the link
    store's look-up, what it holds now."""

    def __init__(self, store: Callable[[str], Sequence[Link]] | None = None) -> None:
        self.looked_up: list[str] = []
        self.store = store

    def __call__(self, key: str) -> Sequence[Link]:
        self.looked_up.append(key)
        if self.store is not None:
            return self.store(key)
        return [Link(key=key, calendar_id=0, event_id=0, created_at=datetime.now(UTC))]


def preview(
    route: Route,
    parsed: Parsed,
    inbound: InboundRequest,
    links: Callable[[str], Sequence[Link]] | None = None,
) -> list[Preview]:
    """The rows `intake.plan` makes of each item: no ledger is written, and none is read
    unless `links` is the link store's look-up (offline, each key stands for its events)."""
    # Imported here: the mapper and the presets are not needed to list or replay deliveries.
    from bridge.delivery import intake
    from bridge.sources import Parsed

    previews = []
    for item in parsed.items:
        found = _OfflineLinks(links)
        rows = intake.plan(route, Parsed(parsed.payload, [item]), inbound, found)
        linked = found.looked_up[0] if found.looked_up else None
        previews.append(Preview(item.idempotency_key, rows, linked))
    return previews


@dataclass(frozen=True)
class RouteTrial:
    """A dry run of one pasted request on a route (the console's route tester).

    `verification`: `None` when the request passed the route's check, else the reason word
    and detail of the refusal (the mapping is still shown: a sample saved from a sender's log
    carries a stale timestamp). `refused`: why the body could not be parsed, when it could not.
    """

    route: str
    when: str | None
    verification: tuple[str, str] | None
    refused: str | None = None
    items: list[Preview] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return self.verification is None


def try_route(ledger: Ledger, route: Route, inbound: InboundRequest) -> RouteTrial:
    """Verify, parse and map `inbound` as the hook would, with the real secrets and the link
    store as it is now; nothing is written and MeetBit is not called."""
    from bridge.errors import BridgeError

    when = route.mapping.when.source if route.mapping.when else None
    verification: tuple[str, str] | None = None
    try:
        route.source.verify(inbound)
    except BridgeError as exc:
        verification = (exc.reason or exc.slug, exc.detail)
    try:
        parsed = route.source.parse(inbound)
    except BridgeError as exc:
        return RouteTrial(route.name, when, verification, f"{exc.status} {exc.title}: {exc.detail}")
    items = preview(route, parsed, inbound, ledger.links.get)
    return RouteTrial(route.name, when, verification, None, items)


# -- write-back replay ------------------------------------------------------------------------


def replay_write_backs(
    ledger: Ledger,
    delivery_ids: Sequence[str] = (),
    *,
    route: str | None = None,
    max_age: float = 86400.0,
) -> tuple[list[WriteBack], list[str]]:
    """Queue failed or dead write-backs again (of these deliveries, or of `route`, or all):
    the worker runs them, looking for the marker first where a write may have happened.
    Returns the jobs queued and the delivery ids not found."""
    if route is not None and (errors := inputs.route_errors(route)):
        raise InvalidQuery("invalid write-back filters", errors={"route": errors})
    unknown: list[str] = []
    if delivery_ids:
        jobs: list[WriteBack] = []
        for delivery_id in dict.fromkeys(delivery_ids):
            if _find(ledger, delivery_id) is None:
                unknown.append(delivery_id)
                continue
            found = ledger.write_backs.for_delivery(delivery_id)
            jobs += [j for j in found if j.status in REPLAYABLE]
    else:
        jobs = ledger.write_backs.replayable(route=route)
    queued = [j for j in jobs if ledger.write_backs.replay(j.id, max_age=max_age)]
    return queued, unknown
