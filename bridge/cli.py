"""The `meetbit-bridge` command line."""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from bridge.errors import BridgeError, ConfigError
from bridge.settings import Settings


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
def check() -> None:
    """Validate the environment and the route file; exit 2 naming everything that is wrong."""
    from bridge.routes import load_routes

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
    from bridge.mapping import CancelCommand, Ignored, LinkLookup, context, decide
    from bridge.routes import load_routes
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
@click.option(
    "--notify-secret", envvar="MEETBIT_WEBHOOK_SECRET", default=None, help="HMAC secret."
)
def sandbox(**options: Any) -> None:
    """Run the MeetBit sandbox (a local stand-in for MeetBit's cancel API)."""
    from bridge.sandbox import SandboxConfig, serve

    host, port = options.pop("host"), options.pop("port")
    config = SandboxConfig(**options)
    click.echo(
        f"MeetBit sandbox on http://{host}:{port} "
        f"(keys {config.key_id} / {config.key_secret}); Ctrl-C to stop"
    )
    serve(config, host, port)


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

    from bridge.service import Bridge
    from bridge.worker import Worker

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
