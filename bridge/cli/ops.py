"""Running the bridge: `check` (settings, routes and ledger), `db upgrade|purge`, `worker`."""

from __future__ import annotations

import signal
import sys

import click

from bridge import logs, tracing
from bridge.cli import (
    Failure,
    cli,
    ledger_name,
    ledger_only,
    quiet_alembic,
    reaching,
    whole_bridge,
)
from bridge.delivery import maintenance
from bridge.delivery.admin import MAX_AGE_DAYS
from bridge.meetbit import MeetBitError
from bridge.settings import Settings


@cli.command()
@click.option(
    "--online",
    is_flag=True,
    help="Also name the ledger's schema revision and call MeetBit once with the configured key "
    "(a cancel of event 0 in calendar 0, without a note: it can never cancel anything).",
)
def check(online: bool) -> None:
    """Validate the environment, the route file and the ledger (reachable, with its schema);
    exit 2 naming everything that is wrong."""
    from bridge.delivery.routes import load_routes

    settings = Settings.from_env()
    routes = load_routes(settings.config_path, settings.environ)
    limit = settings.meetbit_rate_limit
    rate = "auto" if limit is None else f"{limit:g}/s"
    click.echo(f"settings: ok ({settings.meetbit_base_url}, rate {rate})")
    click.echo(f"routes: {len(routes)} in {settings.config_path}")
    for route in routes.values():
        when = route.mapping.when.source if route.mapping.when else "(always)"
        click.echo(f"  POST /hooks/{route.name}  preset={route.preset}  respond={route.respond}")
        click.echo(f"      when: {when}")
    if not routes:
        click.echo("warning: no routes configured; every hook answers 404", err=True)
    url = settings.database_url
    default = " (the default: DATABASE_URL is not set)" if settings.default_ledger else ""
    if not online:
        with reaching(url), quiet_alembic():
            state = maintenance.probe(url)
        click.echo(f"ledger: {ledger_name(url)}{default}: {state}")
        return
    # Online: every probe runs, and every failure is named before exiting 2.
    failures: list[str] = []
    try:
        with reaching(url), quiet_alembic():
            state = maintenance.probe(url)
            # A SQLite file not created yet stays so: check creates nothing.
            path = maintenance.sqlite_file(url)
            exists = path is None or path.exists()
            current, newest = maintenance.schema_revisions(url) if exists else ([], [])
        revision = f" (revision {', '.join(current) or 'none'}, newest {', '.join(newest)})"
        click.echo(f"ledger: {ledger_name(url)}{default}: {state}{revision if exists else ''}")
    except Failure as exc:
        failures.append(f"ledger: {exc.format_message()}")
        click.echo(f"ledger: FAILED: {exc.format_message()}")
    try:
        click.echo(f"meetbit: {settings.meetbit_base_url}: {maintenance.probe_meetbit(settings)}")
    except MeetBitError as exc:
        failures.append(f"meetbit: {exc.detail}")
        click.echo(f"meetbit: {settings.meetbit_base_url}: FAILED: {exc.detail}")
    if failures:
        raise Failure("; ".join(failures))


@cli.group()
def db() -> None:
    """Ledger database maintenance (needs DATABASE_URL only)."""


@db.command()
def upgrade() -> None:
    """Create or migrate the ledger schema (the Procfile's release phase)."""
    url = Settings.from_env(require_meetbit=False).database_url
    with reaching(url), quiet_alembic():
        maintenance.upgrade_schema(url)
    click.echo("ledger schema is up to date")


@db.command()
@click.option(
    "--days",
    type=click.IntRange(1, MAX_AGE_DAYS),
    default=None,
    help="Keep this many days. Default: BRIDGE_RETENTION_DAYS (30).",
)
@click.option("--dry-run", is_flag=True, help="Print how many would be deleted; delete nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation on a terminal.")
def purge(days: int | None, dry_run: bool, yes: bool) -> None:
    """Delete final deliveries older than the retention period (with their attempts), the
    canceled events no delivery names any more, old MeetBit webhook receipts and stale worker
    heartbeats, in short batches (webhooks are answered meanwhile); a SQLite file shrinks.
    Asks first when run on a terminal."""
    with ledger_only() as ledger:
        keep = days if days is not None else _retention_days()
        count = maintenance.purge(ledger, keep_days=keep, dry_run=True)
        if dry_run:
            click.echo(f"would purge {count} deliveries older than {keep} days (dry run)")
            return
        if count and not yes and sys.stdin.isatty():
            click.confirm(f"Delete {count} final deliveries older than {keep} days?", abort=True)
        if not sys.stdout.isatty():  # a script or cron job: the result line only
            removed = maintenance.purge(ledger, keep_days=keep)
        else:
            with click.progressbar(length=count, label="purging", show_pos=True) as bar:
                shown = 0

                def advance(deleted: int) -> None:
                    nonlocal shown
                    bar.update(min(deleted, count) - shown)
                    shown = min(deleted, count)

                removed = maintenance.purge(ledger, keep_days=keep, progress=advance)
    click.echo(f"purged {removed} deliveries older than {keep} days")


def _retention_days() -> int:
    keep = Settings.from_env(require_meetbit=False).retention_days
    if keep > MAX_AGE_DAYS:
        raise Failure(
            f"BRIDGE_RETENTION_DAYS is {keep}; set it to at most {MAX_AGE_DAYS} or pass --days"
        )
    return keep


@cli.command()
@click.option(
    "--batch",
    default=10,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Deliveries attempted per polling round, each claimed alone just before its call.",
)
@click.option("--until-idle", is_flag=True, help="Exit once nothing is pending or due.")
def worker(batch: int, until_idle: bool) -> None:
    """Deliver what the web processes queued or could not finish (the Procfile's worker).

    Claims one due delivery at a time, under its own lease, just before calling MeetBit at the
    shared rate; retries transient failures with backoff; heartbeats so the web processes know
    someone will retry. Several workers may run. SIGTERM finishes the delivery in hand.
    """
    from bridge.delivery import bulk
    from bridge.delivery.worker import Worker
    from bridge.delivery.write_backs import WriteBackRunner

    # Left alone when the host (a test runner) has set logging up.
    logs.configure(only_if_unconfigured=True)
    tracing.setup()
    with whole_bridge(migrate=True) as bridge:
        owner = bulk.owner_name("worker")
        write_backs = None
        if any(route.write_back for route in bridge.routes.values()):
            write_backs = WriteBackRunner(
                bridge.ledger,
                bridge.routes,
                retry_backoff=bridge.settings.retry_backoff,
                timeout=bridge.settings.write_back_timeout,
                alerts=bridge.dispatcher.alerts,
            )
        runner = Worker(
            bridge.ledger,
            bridge.dispatcher,
            batch=batch,
            chores=lambda: bulk.resume_stalled(bridge, owner),
            write_backs=write_backs,
        )
        settings = bridge.settings
        if settings.purge_every is not None:
            runner.purge = maintenance.PurgeSchedule(
                bridge.ledger,
                every=settings.purge_every,
                keep_days=_retention_days(),
                holder=runner.worker_id,
            )

        def _stop(signum: int, frame: object) -> None:
            runner.stop.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        runner.run(until_idle=until_idle)
