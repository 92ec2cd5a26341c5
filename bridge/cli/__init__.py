"""The `meetbit-bridge` command line."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bridge.errors import BridgeError, ConfigError
from bridge.ledger import STATUSES
from bridge.settings import Settings

if TYPE_CHECKING:
    from bridge.delivery.service import Bridge
    from bridge.ledger import Delivery, Ledger


def main() -> None:
    try:
        cli(standalone_mode=True)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Cancel MeetBit meetings from CRM, helpdesk and automation webhooks."""


@cli.command()
def demo() -> None:
    """Run the sandbox and the bridge on loopback and send a signed webhook per preset."""
    from bridge.demo import run

    sys.exit(run(click.echo))


@cli.command()
def check() -> None:
    """Validate the environment and the route file; exit 2 naming everything that is wrong."""
    from bridge.core.routes import load_routes

    settings = Settings.from_env()
    routes = load_routes(settings.config_path, settings.environ)
    click.echo(f"settings: ok ({settings.meetbit_base_url}, rate {settings.meetbit_rate_limit}/s)")
    click.echo(f"routes: {len(routes)} in {settings.config_path}")
    for route in routes.values():
        when = route.mapping.when.source if route.mapping.when else "(always)"
        click.echo(f"  POST /hooks/{route.name}  preset={route.preset}  respond={route.respond}")
        click.echo(f"      when: {when}")
    if not routes:
        click.echo("warning: no routes configured; every hook answers 404", err=True)


@cli.command()
@click.argument("route_name")
@click.argument("payload", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--content-type", help="Default: from the file extension (.json, .xml, .form).")
@click.option(
    "-H", "--header", "headers", multiple=True, help="Extra header NAME:VALUE (repeatable)."
)
def simulate(route_name: str, payload: Path, content_type: str | None, headers: tuple[str]) -> None:
    """Show offline what PAYLOAD maps to on ROUTE_NAME (no signature check, no ledger, no call)."""
    from bridge.core.mapping import CancelCommand, Ignored, LinkLookup, context, decide
    from bridge.core.routes import load_routes
    from bridge.sources import InboundRequest

    environ = dict(os.environ)
    routes = load_routes(
        Path(environ.get("BRIDGE_CONFIG", "config/bridge.yaml")), environ, offline=True
    )
    route = routes.get(route_name)
    if route is None:
        raise click.UsageError(f"no route {route_name!r}; configured: {', '.join(sorted(routes))}")
    suffix_types = {".json": "application/json", ".xml": "text/xml"}
    mimetype = content_type or suffix_types.get(
        payload.suffix.lower(), "application/x-www-form-urlencoded"
    )
    header_map = {}
    for raw in headers:
        name, _, value = raw.partition(":")
        header_map[name.strip().lower()] = value.strip()
    inbound = InboundRequest(
        method="POST",
        url=f"http://localhost/hooks/{route_name}",
        headers=header_map,
        query={},
        body=payload.read_bytes(),
        content_type=mimetype,
        received_at=time.time(),
    )
    try:
        parsed = route.source.parse(inbound)
    except BridgeError as exc:
        raise click.ClickException(f"{exc.status} {exc.title}: {exc.detail}") from exc
    when = route.mapping.when.source if route.mapping.when else None
    click.echo(f"route {route.name} (preset {route.preset}); when: {when or '(always)'}")
    click.echo(f"{len(parsed.items)} item(s)")
    for index, item in enumerate(parsed.items):
        ctx = context(
            payload=parsed.payload,
            event=item.event,
            headers=header_map,
            query={},
            route=route.name,
        )
        prefix = f"  [{index}] key={item.idempotency_key}: "
        try:
            decision = decide(route.mapping, ctx)
        except BridgeError as exc:
            click.echo(prefix + f"mapping error: {exc.detail} {exc.errors or ''}")
            continue
        if isinstance(decision, Ignored):
            click.echo(prefix + f"ignored ({decision.reason})")
        elif isinstance(decision, CancelCommand):
            click.echo(
                prefix + f"cancel calendar {decision.calendar_id} event {decision.event_id} "
                f"(`when` true) note={decision.note!r}"
            )
        elif isinstance(decision, LinkLookup):
            click.echo(
                prefix + f"cancel every event linked to {decision.kind} {decision.key!r} "
                f"note={decision.note!r}"
            )


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8090, show_default=True, type=int)
@click.option("--rate-limit", default=5.0, show_default=True, help="Requests/s per key; 0 = off.")
@click.option("--retry-after", default=1, show_default=True, help="Seconds sent on 429.")
@click.option("--latency", default=0.0, show_default=True, help="Seconds added to every cancel.")
@click.option("--failure-rate", default=0.0, show_default=True, help="Fraction answered 500.")
@click.option("--seed", type=int, default=None, help="Seed for failures and latency spikes.")
@click.option("--notify", "notify_url", default=None, help="Send signed webhooks to this URL.")
@click.option("--notify-secret", envvar="MEETBIT_WEBHOOK_SECRET", default=None, help="HMAC secret.")
def sandbox(**options: Any) -> None:
    """Run the MeetBit sandbox (a local stand-in for MeetBit's cancel API)."""
    from bridge.sandbox import SandboxConfig, serve

    host, port = options.pop("host"), options.pop("port")
    serve(SandboxConfig(**options), host, port)  # serve prints the one banner


@cli.group()
def db() -> None:
    """Ledger database maintenance."""


@db.command()
def upgrade() -> None:
    """Create or migrate the ledger schema (the Procfile's release phase)."""
    from bridge.ledger import Ledger

    settings = Settings.from_env(require_meetbit=False)
    ledger = Ledger(settings.database_url)
    ledger.upgrade()
    click.echo("ledger schema is up to date")
    ledger.dispose()


@db.command()
@click.option("--days", type=int, default=None, help="Default: BRIDGE_RETENTION_DAYS (30).")
def purge(days: int | None) -> None:
    """Delete final deliveries older than the retention period."""
    from bridge.ledger import Ledger

    settings = Settings.from_env(require_meetbit=False)
    keep = days if days is not None else settings.retention_days
    ledger = Ledger(settings.database_url)
    removed = ledger.purge(older_than=datetime.now(UTC) - timedelta(days=keep))
    click.echo(f"purged {removed} deliveries older than {keep} days")
    ledger.dispose()


@cli.command()
@click.option("--batch", default=10, show_default=True, help="Deliveries claimed at a time.")
@click.option("--until-idle", is_flag=True, help="Exit once nothing is pending or due.")
def worker(batch: int, until_idle: bool) -> None:
    """Deliver queued and failed deliveries at the shared rate (the Procfile's worker)."""
    import logging
    import signal

    from bridge.delivery.service import Bridge
    from bridge.delivery.worker import Worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    bridge = Bridge.from_settings(Settings.from_env())
    bridge.ledger.ensure_schema()
    runner = Worker(bridge.ledger, bridge.dispatcher, batch=batch)

    def _stop(signum: int, frame: object) -> None:
        runner.stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    runner.run(until_idle=until_idle)
    bridge.close()


# -- ledger inspection: deliveries and links --------------------------------------------------

_AGO = re.compile(r"^(\d+)\s*([smhd])$")
_AGO_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# Outcomes after which an operator has something to look at: the command exits 1.
_REPLAY_FAILURES = ("failed", "not_found", "unknown")


class SinceParam(click.ParamType[datetime, Any]):
    """An ISO 8601 date-time (UTC when it has no offset) or an age like `30m`, `2h`, `7d`."""

    name = "since"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        ago = _AGO.match(text)
        if ago:
            seconds = int(ago.group(1)) * _AGO_SECONDS[ago.group(2)]
            return datetime.now(UTC) - timedelta(seconds=seconds)
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            self.fail(f"{text!r} is neither ISO 8601 nor an age like 2h", param, ctx)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@contextmanager
def _ledger_only() -> Iterator[Ledger]:
    """The ledger from DATABASE_URL alone; ledger errors end the command with a message."""
    from bridge.ledger import Ledger

    settings = Settings.from_env(require_meetbit=False)
    ledger = Ledger(settings.database_url)
    try:
        with _ledger_errors():
            if settings.database_url.startswith("sqlite"):
                ledger.ensure_schema()  # as the web app does for its default SQLite ledger
            yield ledger
    finally:
        ledger.dispose()


@contextmanager
def _ledger_errors() -> Iterator[None]:
    try:
        yield
    except BridgeError as exc:
        raise click.ClickException(exc.detail) from exc


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    for line in [headers, *rows]:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def _cut(text: str | None, width: int = 60) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


@cli.group()
def deliveries() -> None:
    """Inspect and replay the ledger's deliveries (needs DATABASE_URL)."""


@deliveries.command("list")
@click.option("--status", type=click.Choice(STATUSES), help="Only this status.")
@click.option("--route", help="Only this route.")
@click.option("--since", type=SinceParam(), help="Created at/after: ISO 8601 or an age (2h).")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--cursor", help="Continue after the page that printed this cursor.")
def list_deliveries(
    status: str | None, route: str | None, since: datetime | None, limit: int, cursor: str | None
) -> None:
    """List deliveries, newest first."""
    with _ledger_only() as ledger:
        try:
            page, more = ledger.list(
                status=status, route=route, since=since, cursor=cursor, limit=limit
            )
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--cursor") from exc
    if not page:
        click.echo("no deliveries")
        return
    rows = [
        [
            d.id,
            _when(d.created_at),
            d.route,
            d.status,
            d.outcome or "-",
            f"{d.calendar_id}/{d.event_id}" if d.calendar_id is not None else "-",
            str(d.attempts),
            _cut(d.last_error),
        ]
        for d in page
    ]
    headers = ["ID", "CREATED (UTC)", "ROUTE", "STATUS", "OUTCOME", "CAL/EVENT", "TRIES", "ERROR"]
    _table(headers, rows)
    if more:
        click.echo(f"more: meetbit-bridge deliveries list --cursor {more}")


@deliveries.command("show")
@click.argument("delivery_id")
def show_delivery(delivery_id: str) -> None:
    """Print one delivery as JSON, every field."""
    from bridge.web.schemas import DeliverySchema

    with _ledger_only() as ledger:
        delivery = ledger.get(delivery_id)
    if delivery is None:
        raise click.ClickException(f"no delivery {delivery_id!r}")
    click.echo(json.dumps(DeliverySchema().dump(delivery), indent=2, ensure_ascii=False))


@deliveries.command("replay")
@click.argument("delivery_ids", nargs=-1)
@click.option("--status", type=click.Choice(["failed", "dead"]), help="Default: both.")
@click.option("--route", help="Only deliveries of this route.")
@click.option("--since", type=SinceParam(), help="Created at/after: ISO 8601 or an age (2h).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def replay_deliveries(
    delivery_ids: tuple[str, ...],
    status: str | None,
    route: str | None,
    since: datetime | None,
    yes: bool,
) -> None:
    """Re-run failed or dead deliveries now, at the shared MeetBit rate.

    Name DELIVERY_IDS, or select them with --status/--route/--since. An event already
    canceled is answered already_canceled without a call. Exits 1 if any still failed.
    """
    from bridge.delivery.service import Bridge

    filtered = status is not None or route is not None or since is not None
    if delivery_ids and filtered:
        raise click.UsageError("give delivery IDs or filters, not both")
    if not delivery_ids and not filtered:
        raise click.UsageError("give delivery IDs or at least one of --status/--route/--since")

    bridge = Bridge.from_settings(Settings.from_env())
    try:
        with _ledger_errors():
            if bridge.settings.database_url.startswith("sqlite"):
                bridge.ledger.ensure_schema()
            counts: Counter[str] = Counter()
            selected: list[Delivery] = []
            if delivery_ids:
                for delivery_id in dict.fromkeys(delivery_ids):
                    found = bridge.ledger.get(delivery_id)
                    if found is None:
                        click.echo(f"unknown delivery {delivery_id}", err=True)
                        counts["unknown"] += 1
                    else:
                        selected.append(found)
            else:
                # Selected in full before replaying: a replay changes the status being paged.
                for wanted in [status] if status else ["failed", "dead"]:
                    selected.extend(_all_deliveries(bridge.ledger, wanted, route, since))
            if not selected:
                click.echo("nothing to replay")
            elif yes or click.confirm(f"Replay {len(selected)} deliveries?", abort=True):
                problems = _replay_all(bridge, selected, counts)
                for line in problems:
                    click.echo(line, err=True)
    finally:
        bridge.close()
    summary = ", ".join(f"{name}: {n}" for name, n in sorted(counts.items()))
    click.echo(f"replayed {sum(counts.values())}: {summary or 'nothing'}")
    if any(counts[name] for name in _REPLAY_FAILURES):
        sys.exit(1)


def _all_deliveries(
    ledger: Ledger, status: str, route: str | None, since: datetime | None
) -> list[Delivery]:
    found: list[Delivery] = []
    cursor: str | None = None
    while True:
        page, cursor = ledger.list(
            status=status, route=route, since=since, cursor=cursor, limit=200
        )
        found.extend(page)
        if cursor is None:
            return found


def _replay_all(bridge: Bridge, selected: Sequence[Delivery], counts: Counter[str]) -> list[str]:
    """Replay each delivery, counting outcomes; returns a line per delivery still failing."""
    from bridge.delivery.answers import shown_outcome
    from bridge.errors import InFlight

    problems: list[str] = []
    worker_alive = bridge.worker_alive()
    with click.progressbar(selected, label="replaying", show_pos=True) as bar:
        for delivery in bar:
            if delivery.status not in ("failed", "dead"):
                counts[f"skipped ({delivery.status})"] += 1
                continue
            try:
                done = bridge.replay(delivery)
            except InFlight:
                counts["skipped (in_flight)"] += 1
                continue
            outcome = shown_outcome(done, worker_alive=worker_alive)
            counts[outcome] += 1
            if outcome in _REPLAY_FAILURES:
                problems.append(f"{done.id}: {outcome}: {_cut(done.last_error) or done.outcome}")
    return problems


@cli.group()
def links() -> None:
    """Manage the link store: key (an email, or any key) -> MeetBit events (needs DATABASE_URL)."""


@links.command("list")
def list_links() -> None:
    """Print every link, ordered by key."""
    rows: list[list[str]] = []
    with _ledger_only() as ledger:
        cursor: str | None = None
        while True:
            page, cursor = ledger.list_links(cursor=cursor, limit=500)
            rows.extend(
                [link.key, str(link.calendar_id), str(link.event_id), _when(link.created_at)]
                for link in page
            )
            if cursor is None:
                break
    if not rows:
        click.echo("no links")
        return
    _table(["KEY", "CALENDAR", "EVENT", "CREATED (UTC)"], rows)


_MEETBIT_ID = click.IntRange(1, 2**63 - 1)


@links.command("set")
@click.argument("key")
@click.argument("calendar_id", type=_MEETBIT_ID)
@click.argument("event_id", type=_MEETBIT_ID)
def set_link(key: str, calendar_id: int, event_id: int) -> None:
    """Link KEY to a MeetBit event (emails are stored lower-cased)."""
    from bridge.web.schemas import MAX_LINK_KEY, link_key

    key = link_key(key)
    if not key or len(key) > MAX_LINK_KEY:
        raise click.BadParameter(f"must be 1 to {MAX_LINK_KEY} characters", param_hint="KEY")
    with _ledger_only() as ledger:
        created = ledger.put_link(key, calendar_id, event_id)
    state = "linked" if created else "already linked"
    click.echo(f"{state}: {key} -> calendar {calendar_id} event {event_id}")


@links.command("delete")
@click.argument("key")
@click.option("--calendar-id", type=_MEETBIT_ID, help="Only links to this calendar.")
@click.option("--event-id", type=_MEETBIT_ID, help="Only links to this event.")
def delete_link(key: str, calendar_id: int | None, event_id: int | None) -> None:
    """Remove KEY's links (all, or those matching the options); exits 1 if none matched."""
    from bridge.web.schemas import link_key

    key = link_key(key)
    with _ledger_only() as ledger:
        removed = ledger.delete_links(key, calendar_id=calendar_id, event_id=event_id)
    if removed == 0:
        raise click.ClickException(f"no matching link under {key!r}")
    click.echo(f"removed {removed} link(s) of {key}")
