"""`bridge.delivery.admin`: the filters, limits and key checks the admin API and the command line
share, on a real ledger (SQLite, and PostgreSQL when configured)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bridge.core.delivery import Completion
from bridge.delivery import admin as operations
from bridge.delivery.admin import PAGE_MAX, DeliveryQuery, PageRequest, parse_since
from bridge.errors import InvalidPath, InvalidQuery, NotFound
from bridge.ledger import Ledger, NewDelivery

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2h", NOW - timedelta(hours=2)),
        ("30m", NOW - timedelta(minutes=30)),
        ("7d", NOW - timedelta(days=7)),
        ("90 s", NOW - timedelta(seconds=90)),
        ("2026-10-01T08:00:00Z", datetime(2026, 10, 1, 8, tzinfo=UTC)),
        ("2026-10-01T08:00:00", datetime(2026, 10, 1, 8, tzinfo=UTC)),
        ("2026-10-01", datetime(2026, 10, 1, tzinfo=UTC)),
        # An unencoded `+` in a query string arrives as a space; only after a time of day.
        ("2026-10-01T08:00:00 02:00", datetime(2026, 10, 1, 6, tzinfo=UTC)),
        ("2026-10-01 08:00", datetime(2026, 10, 1, 8, tzinfo=UTC)),
    ],
)
def test_since_is_iso_8601_or_an_age(text: str, expected: datetime) -> None:
    assert parse_since(text, now=NOW) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("yesterday", "neither ISO 8601"),
        ("2h ago", "neither ISO 8601"),
        ("99999999999d", "at most 36500d"),
        ("36501d", "at most 36500d"),
    ],
)
def test_a_bad_since_says_what_is_accepted(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_since(text, now=NOW)


def record(ledger: Ledger, key: str, *, status: str = "pending", outcome: str | None = None) -> str:
    row = NewDelivery(
        route="r",
        idempotency_key=key,
        calendar_id=1,
        event_id=int(key[1:]),
        note="n",
        status=status,
        outcome=outcome,
    )
    ((delivery, _),) = ledger.deliveries.record([row])
    return delivery.id


def test_state_final_and_retrying(ledger: Ledger) -> None:
    canceled = record(ledger, "e1")
    ledger.attempts.complete(canceled, Completion("succeeded", "canceled"))
    retrying = record(ledger, "e2")
    ledger.attempts.complete(
        retrying, Completion("failed", None, last_error="MeetBit failed (500)")
    )
    dead = record(ledger, "e3")
    ledger.attempts.complete(dead, Completion("dead", "failed"))
    # A failed status that is final: no target to call, nothing to retry.
    mapping = record(ledger, "e4", status="failed", outcome="mapping_error")
    pending = record(ledger, "e5")

    def ids(query: DeliveryQuery) -> set[str]:
        return {d.id for d in operations.list_deliveries(ledger, query).items}

    assert ids(DeliveryQuery(state="final")) == {canceled, dead, mapping}
    assert ids(DeliveryQuery(state="retrying")) == {retrying}
    assert ids(DeliveryQuery(status="failed")) == {retrying, mapping}
    assert ids(DeliveryQuery(outcome="failed")) == {dead}
    assert ids(DeliveryQuery(outcome="mapping_error", state="final")) == {mapping}
    assert ids(DeliveryQuery()) == {canceled, retrying, dead, mapping, pending}


@pytest.mark.parametrize("limit", [0, PAGE_MAX + 1])
def test_one_page_cap_for_deliveries_and_links(ledger: Ledger, limit: int) -> None:
    with pytest.raises(InvalidQuery) as deliveries:
        operations.list_deliveries(ledger, DeliveryQuery(limit=limit))
    with pytest.raises(InvalidQuery) as links:
        operations.list_links(ledger, PageRequest(limit=limit))
    assert deliveries.value.errors == links.value.errors == {"limit": ["must be between 1 and 200"]}


def test_filters_are_checked_by_the_service_too(ledger: Ledger) -> None:
    with pytest.raises(InvalidQuery) as caught:
        operations.list_deliveries(ledger, DeliveryQuery(status="lost", state="done"))
    assert set(caught.value.errors or {}) == {"status", "state"}
    assert caught.value.title == "Invalid query parameters"


def test_link_keys_are_checked_alike_everywhere(ledger: Ledger) -> None:
    assert operations.link_key("  Ada@Example.COM ") == "ada@example.com"
    assert operations.link_key(" crm-7") == " crm-7"  # not an email: kept as given
    assert operations.link_key("k" * 320) == "k" * 320
    for bad in ("", "k" * 321):
        with pytest.raises(InvalidPath):
            operations.link_key(bad)
        with pytest.raises(InvalidPath):
            operations.put_link(ledger, bad, 1, 2)
        with pytest.raises(InvalidPath):
            operations.links_of(ledger, bad)
        with pytest.raises(InvalidPath):
            operations.delete_links(ledger, bad)
    stored = operations.put_link(ledger, "ADA@example.com", 1, 2)
    assert (stored.key, stored.created, len(stored.links)) == ("ada@example.com", True, 1)
    assert not operations.put_link(ledger, "ada@example.com ", 1, 2).created
    assert operations.delete_links(ledger, "Ada@Example.com") == ("ada@example.com", 1)
    with pytest.raises(NotFound):
        operations.delete_links(ledger, "ada@example.com")
    with pytest.raises(NotFound):
        operations.links_of(ledger, "ada@example.com")


def test_every_link_is_paged_through(ledger: Ledger) -> None:
    for event_id in range(1, PAGE_MAX + 6):
        ledger.links.put(f"k{event_id:04d}", 1, event_id)
    found = operations.all_links(ledger)
    assert [link.event_id for link in found] == list(range(1, PAGE_MAX + 6))


def test_replay_selection_pages_through_every_match(ledger: Ledger) -> None:
    made = []
    for n in range(1, PAGE_MAX + 4):
        delivery_id = record(ledger, f"e{n}")
        ledger.attempts.complete(delivery_id, Completion("dead", "failed"))
        made.append(delivery_id)
    selection = operations.select_replay(ledger, query=DeliveryQuery(route="r"))
    assert sorted(d.id for d in selection.deliveries) == sorted(made)
    named = operations.select_replay(ledger, [made[0], "dlv_nope", made[0]])
    assert ([d.id for d in named.deliveries], named.unknown) == ([made[0]], ["dlv_nope"])
