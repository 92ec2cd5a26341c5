"""`meetbit-bridge links list|set|delete`: the link store (a key, such as a customer email, to
MeetBit events), with the admin API's key checks (see `bridge.delivery.admin`)."""

from __future__ import annotations

import click

from bridge.cli import cli, ledger_only, table, when
from bridge.delivery import admin as operations

_MEETBIT_ID = click.IntRange(1, operations.MAX_ID)


@cli.group()
def links() -> None:
    """Manage the link store: key (an email, or any key) -> MeetBit events (needs DATABASE_URL)."""


@links.command("list")
def list_links() -> None:
    """Print every link, ordered by key."""
    with ledger_only() as ledger:
        found = operations.all_links(ledger)
    if not found:
        click.echo("no links")
        return
    rows = [[x.key, str(x.calendar_id), str(x.event_id), when(x.created_at)] for x in found]
    table(["KEY", "CALENDAR", "EVENT", "CREATED (UTC)"], rows)


@links.command("set")
@click.argument("key")
@click.argument("calendar_id", type=_MEETBIT_ID)
@click.argument("event_id", type=_MEETBIT_ID)
def set_link(key: str, calendar_id: int, event_id: int) -> None:
    """Link KEY to a MeetBit event (emails are stored lower-cased)."""
    key = operations.link_key(key)  # checked before the ledger is opened
    with ledger_only() as ledger:
        stored = operations.put_link(ledger, key, calendar_id, event_id)
    state = "linked" if stored.created else "already linked"
    click.echo(f"{state}: {stored.key} -> calendar {calendar_id} event {event_id}")


@links.command("delete")
@click.argument("key")
@click.option("--calendar-id", type=_MEETBIT_ID, help="Only links to this calendar.")
@click.option("--event-id", type=_MEETBIT_ID, help="Only links to this event.")
def delete_link(key: str, calendar_id: int | None, event_id: int | None) -> None:
    """Remove KEY's links (all, or those matching the options); exits 1 if none matched."""
    key = operations.link_key(key)
    with ledger_only() as ledger:
        key, removed = operations.delete_links(
            ledger, key, calendar_id=calendar_id, event_id=event_id
        )
    click.echo(f"removed {removed} link(s) of {key}")
