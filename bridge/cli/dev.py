"""Trying the bridge out: `demo`, `sandbox` (the MeetBit simulator) and `simulate` (what a payload
file maps to, offline, through the real intake)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from bridge.cli import Failure, cli
from bridge.delivery.admin import Preview

_SUFFIX_TYPES = {".json": "application/json", ".xml": "text/xml"}
_FORM = "application/x-www-form-urlencoded"


class _Refused(Failure):
    """The bridge would refuse the payload: the answer it would give, exit code 1."""

    exit_code = 1


@cli.command()
@click.option(
    "--keep", is_flag=True, help="Keep running (the console open on its deliveries) until Ctrl-C."
)
def demo(keep: bool) -> None:
    """Run the sandbox and the bridge on loopback and send a signed webhook per preset."""
    from bridge.demo import run

    sys.exit(run(click.echo, keep=keep))


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8090, show_default=True, type=click.IntRange(0, 65535))
@click.option("--rate-limit", default=5.0, show_default=True, help="Requests/s per key; 0 = off.")
@click.option("--tenant-limit", default=0.0, show_default=True, help="Requests/s of all keys.")
@click.option(
    "--window", type=click.Choice(["calendar", "sliding"]), default="calendar", show_default=True,
    help="Count per calendar second (as MeetBit) or over any one-second span.",
)  # fmt: skip
@click.option(
    "--headers", type=click.Choice(["draft06", "draft", "both", "none"]), default="draft06",
    show_default=True, help="RateLimit-* headers (draft06) or RateLimit/RateLimit-Policy.",
)  # fmt: skip
@click.option("--other-app-rate", default=0.0, show_default=True, help="Another app's calls/s.")
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


@cli.command()
@click.argument("route_name")
@click.argument("payload", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--content-type", help="Default: from the file extension (.json, .xml, .form).")
@click.option(
    "-H", "--header", "headers", multiple=True, help="Extra header NAME:VALUE (repeatable)."
)
def simulate(route_name: str, payload: Path, content_type: str | None, headers: tuple[str]) -> None:
    """Show offline what PAYLOAD maps to on ROUTE_NAME: the intake's own plan, with no
    signature check, no ledger (link targets stay unresolved) and no MeetBit call.

    Exits 1 if the bridge would refuse the payload (e.g. a content type the preset does not
    take), naming the answer it would give.
    """
    from bridge.delivery.admin import preview
    from bridge.delivery.routes import load_routes
    from bridge.errors import BridgeError
    from bridge.sources import InboundRequest

    environ = dict(os.environ)
    config = Path(environ.get("BRIDGE_CONFIG", "config/bridge.yaml"))
    routes = load_routes(config, environ, offline=True)
    route = routes.get(route_name)
    if route is None:
        raise click.UsageError(f"no route {route_name!r}; configured: {', '.join(sorted(routes))}")
    inbound = InboundRequest(
        method="POST",
        url=f"http://localhost/hooks/{route_name}",
        headers=_header_map(headers),
        query={},
        body=payload.read_bytes(),
        content_type=content_type or _SUFFIX_TYPES.get(payload.suffix.lower(), _FORM),
        received_at=time.time(),
    )
    try:
        parsed = route.source.parse(inbound)
    except BridgeError as exc:  # the payload is refused: the answer, not a failure of ours
        raise _Refused(f"{exc.status} {exc.title}: {exc.detail}") from exc
    when = route.mapping.when.source if route.mapping.when else None
    click.echo(f"route {route.name} (preset {route.preset}); when: {when or '(always)'}")
    click.echo(f"{len(parsed.items)} item(s)")
    kind = "customer_email" if route.mapping.customer_email is not None else "link"
    for index, item in enumerate(preview(route, parsed, inbound)):
        for line in _lines(item, kind):
            click.echo(f"  [{index}] key={item.key}: {line}")


def _header_map(headers: tuple[str, ...]) -> dict[str, str]:
    found = {}
    for raw in headers:
        name, colon, value = raw.partition(":")
        if not colon or not name.strip():
            raise click.BadParameter(f"{raw!r} is not NAME:VALUE", param_hint="--header")
        found[name.strip().lower()] = value.strip()
    return found


def _lines(item: Preview, kind: str) -> list[str]:
    """What one item becomes, a line per row the intake would record."""
    lines = []
    for row in item.rows:
        error = row.error or {}
        if row.status == "ignored":
            lines.append(f"ignored ({error.get('reason')})")
        elif row.outcome == "mapping_error":
            lines.append(f"mapping error: {error.get('detail')} {error.get('errors') or ''}")
        elif item.linked_to is not None:
            target = f"every event linked to {kind} {item.linked_to!r}"
            lines.append(f"cancel {target} (`when` true) note={row.note!r}")
        else:
            target = f"calendar {row.calendar_id} event {row.event_id}"
            lines.append(f"cancel {target} (`when` true) note={row.note!r}")
    return lines
