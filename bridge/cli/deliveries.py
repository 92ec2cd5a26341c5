"""`meetbit-bridge deliveries list|show|replay`: the admin API's delivery operations, from the
shell, with the same filters and page limit (see `bridge.delivery.admin`)."""

from __future__ import annotations

import json
import shlex
import sys
from datetime import datetime

import click

from bridge.cli import SinceParam, cli, cut, ledger_only, table, when, whole_bridge
from bridge.core.delivery import STATUSES, Delivery
from bridge.delivery import admin as operations
from bridge.delivery.admin import OUTCOMES, PAGE_DEFAULT, PAGE_MAX, STATES, DeliveryQuery

_SINCE_HELP = "Created at/after: ISO 8601 or an age (30m, 2h, 7d)."


@cli.group()
def deliveries() -> None:
    """Inspect and replay the ledger's deliveries (needs DATABASE_URL)."""


@deliveries.command("list")
@click.option("--status", type=click.Choice(STATUSES), help="Only this status.")
@click.option("--route", help="Only this route.")
@click.option("--since", type=SinceParam(), help=_SINCE_HELP)
@click.option("--outcome", type=click.Choice(OUTCOMES), help="Only this outcome.")
@click.option(
    "--state",
    type=click.Choice(STATES),
    help="final: no further MeetBit call; retrying: failed transiently, the worker retries.",
)
@click.option("--limit", type=click.IntRange(1, PAGE_MAX), default=PAGE_DEFAULT, show_default=True)
@click.option("--cursor", help="Continue after the page that printed this cursor.")
@click.option("--search", help="A delivery id, idempotency key, calendar or event id, or an email.")
def list_deliveries(
    status: str | None,
    route: str | None,
    since: datetime | None,
    outcome: str | None,
    state: str | None,
    limit: int,
    cursor: str | None,
    search: str | None,
) -> None:
    """List deliveries, newest first."""
    query = DeliveryQuery(
        status=status,
        route=route,
        since=since,
        outcome=outcome,
        state=state,
        cursor=cursor,
        limit=limit,
        search=search,
    )
    with ledger_only() as ledger:
        page = operations.list_deliveries(ledger, query)
    if not page.items:
        click.echo("no deliveries")
        return
    headers = ["ID", "CREATED (UTC)", "ROUTE", "STATUS", "OUTCOME", "CAL/EVENT", "TRIES", "ERROR"]
    table(headers, [_row(d) for d in page.items])
    if page.next_cursor:
        click.echo(
            f"more: meetbit-bridge deliveries list --cursor {page.next_cursor}{_again(query)}"
        )


def _row(d: Delivery) -> list[str]:
    target = f"{d.calendar_id}/{d.event_id}" if d.calendar_id is not None else "-"
    cells = [d.id, when(d.created_at), d.route, d.status, d.outcome or "-", target]
    return [*cells, str(d.attempts), cut(d.last_error)]


def _again(query: DeliveryQuery) -> str:
    """The options that select the same deliveries again (an age as the time it meant)."""
    options = [
        ("--status", query.status),
        ("--route", query.route),
        ("--since", query.since.isoformat() if query.since else None),
        ("--outcome", query.outcome),
        ("--state", query.state),
        ("--search", query.search),
        ("--limit", str(query.limit) if query.limit != PAGE_DEFAULT else None),
    ]
    return "".join(f" {name} {shlex.quote(value)}" for name, value in options if value)


@deliveries.command("show")
@click.argument("delivery_id")
def show_delivery(delivery_id: str) -> None:
    """Print one delivery as JSON, every field (as `GET /admin/deliveries/<id>` does)."""
    from bridge.web.schemas import DeliveryDetailSchema  # the API's own shape of a delivery

    with ledger_only() as ledger:
        detail = operations.get_delivery_detail(ledger, delivery_id)
    click.echo(json.dumps(DeliveryDetailSchema().dump(detail), indent=2, ensure_ascii=False))


@deliveries.command("replay")
@click.argument("delivery_ids", nargs=-1)
@click.option("--status", type=click.Choice(operations.REPLAYABLE), help="Default: both.")
@click.option("--route", help="Only deliveries of this route.")
@click.option("--since", type=SinceParam(), help=_SINCE_HELP)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--write-backs",
    "write_backs",
    is_flag=True,
    help="Re-run the failed or dead write-backs (of DELIVERY_IDS, or of --route, or all) "
    "instead of the deliveries; the worker delivers them.",
)
def replay_deliveries(
    delivery_ids: tuple[str, ...],
    status: str | None,
    route: str | None,
    since: datetime | None,
    yes: bool,
    write_backs: bool,
) -> None:
    """Re-run failed or dead deliveries now, at the shared MeetBit rate.

    Name DELIVERY_IDS, or select them with --status/--route/--since. An event already
    canceled is answered already_canceled without a call. Exits 1 if any still failed.
    """
    if write_backs:
        _replay_write_backs(delivery_ids, route, status, since)
        return
    filtered = status is not None or route is not None or since is not None
    if delivery_ids and filtered:
        raise click.UsageError("give delivery IDs or filters, not both")
    if not delivery_ids and not filtered:
        raise click.UsageError("give delivery IDs or at least one of --status/--route/--since")
    query = DeliveryQuery(status=status, route=route, since=since)
    with whole_bridge() as bridge:
        selection = operations.select_replay(bridge.ledger, delivery_ids, query)
        for unknown in selection.unknown:
            click.echo(f"unknown delivery {unknown}", err=True)
        report = operations.ReplayReport(unknown=selection.unknown)
        if not selection.deliveries:
            click.echo("nothing to replay")
        elif yes or click.confirm(f"Replay {len(selection.deliveries)} deliveries?", abort=True):
            total = len(selection.deliveries)
            with click.progressbar(length=total, label="replaying", show_pos=True) as bar:
                report = operations.replay(
                    bridge, selection, progress=lambda _: bar.update(1), by="cli"
                )
    for item in report.failures():
        done = item.delivery
        click.echo(f"{done.id}: {item.outcome}: {cut(done.last_error) or done.outcome}", err=True)
    counts = report.counts()
    summary = ", ".join(f"{name}: {n}" for name, n in sorted(counts.items()))
    click.echo(f"replayed {sum(counts.values())}: {summary or 'nothing'}")
    if not report.ok:
        sys.exit(1)


def _replay_write_backs(
    delivery_ids: tuple[str, ...], route: str | None, status: str | None, since: datetime | None
) -> None:
    if status is not None or since is not None:
        raise click.UsageError("--write-backs takes DELIVERY_IDS or --route, not --status/--since")
    with ledger_only() as ledger:
        queued, unknown = operations.replay_write_backs(ledger, delivery_ids, route=route)
    for delivery_id in unknown:
        click.echo(f"unknown delivery {delivery_id}", err=True)
    for job in queued:
        click.echo(f"{job.id}: {job.to} on {job.record or '-'} (delivery {job.delivery_id})")
    click.echo(f"queued {len(queued)} write-backs again; the worker delivers them")
    if unknown:
        sys.exit(1)
