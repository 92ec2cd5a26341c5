"""The `meetbit-bridge` command line: the click group, `main`, and what its commands share (one-line
errors, opening the ledger, tables). The commands live by topic: `ops` (check, db, worker),
`deliveries`, `links` and `dev` (demo, sandbox, simulate).

Exit codes: 0 done; 1 nothing matched (an unknown delivery, no such link) or a replay still
failed; 2 any error, printed as one line on stderr that names the fix, never a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import click

from bridge import logs
from bridge.delivery.admin import parse_since
from bridge.delivery.maintenance import open_ledger, sqlite_file
from bridge.errors import (
    BridgeError,
    ConfigError,
    LedgerSchemaMissing,
    LedgerUnavailable,
    NotFound,
)
from bridge.settings import Settings, load_dotenv

if TYPE_CHECKING:
    from bridge.delivery.service import Bridge
    from bridge.ledger import Ledger

PROG = "meetbit-bridge"
DISTRIBUTION = "meetbit-bridge"


class Failure(click.ClickException):
    """An error the command line reports as one line on stderr, exit code 2."""

    exit_code = 2

    def show(self, file: IO[Any] | None = None) -> None:
        if logs.is_json():
            # A process that logs JSON (the worker) writes nothing else to stderr.
            logging.getLogger(PROG).error("error: %s", self.format_message())
            return
        click.echo(f"error: {self.format_message()}", err=True)


class NothingFound(Failure):
    """What was asked for does not exist: one line, exit code 1 (like grep finding nothing)."""

    exit_code = 1


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _describe(exc: BridgeError) -> str:
    fields = "; ".join(f"{name}: {' '.join(msgs)}" for name, msgs in (exc.errors or {}).items())
    return f"{exc.detail} ({fields})" if fields else exc.detail


@contextmanager
def _one_line_errors() -> Iterator[None]:
    """Every error a command can meet, as a `Failure` (one line, exit 2)."""
    try:
        yield
    except (Failure, click.exceptions.Exit, click.Abort, click.exceptions.NoArgsIsHelpError):
        raise  # a bare group prints its help: not an error to flatten
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        raise Failure(_one_line(exc.format_message()) + hint) from exc
    except click.ClickException as exc:
        raise Failure(_one_line(exc.format_message())) from exc
    except ConfigError as exc:
        problems = "; ".join(_one_line(p) for p in exc.problems)
        raise Failure(f"invalid configuration: {problems}") from exc
    except NotFound as exc:
        raise NothingFound(exc.detail) from exc
    except BridgeError as exc:
        raise Failure(_one_line(_describe(exc))) from exc
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        raise Failure(f"{exc.strerror or exc}{where}") from exc
    except Exception as exc:
        # A bug, not the operator's doing: still one line, with what to report.
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise Failure(f"unexpected {type(exc).__name__}: {first} (please report this)") from exc


class BridgeGroup(click.Group):
    """A click group whose every error, a usage error included, is one line (see `Failure`)."""

    group_class = type  # nested groups are BridgeGroups too

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        with _one_line_errors():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        with _one_line_errors():
            return super().invoke(ctx)


@click.group(cls=BridgeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name=DISTRIBUTION, prog_name=PROG, message="%(prog)s %(version)s")
def cli() -> None:
    """Cancel MeetBit meetings from CRM, helpdesk and automation webhooks."""


def main() -> None:
    load_dotenv()
    cli(prog_name=PROG)


# -- shared by the commands -------------------------------------------------------------------


class SinceParam(click.ParamType[datetime, Any]):
    """An ISO 8601 date-time (UTC when it has no offset) or an age like `30m`, `2h`, `7d`."""

    name = "since"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_since(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _where(url: str) -> str:
    """Where a DATABASE_URL points, for an error message: never its password."""
    if url.startswith("sqlite"):
        return f"the SQLite ledger {sqlite_file(url) or '(in memory)'}"
    return f"the ledger database on {_host(url)}"


def _host(url: str) -> str:
    parts = urlsplit(url)
    try:
        port = parts.port or 5432
    except ValueError:
        port = 5432
    return f"{parts.hostname or 'the local socket'}:{port}"


def ledger_name(url: str) -> str:
    """The ledger as `check` names it: SQLite's absolute file, PostgreSQL's database and host."""
    if url.startswith("sqlite"):
        return f"SQLite {sqlite_file(url) or '(in memory)'}"
    database = unquote(urlsplit(url).path.lstrip("/")) or "(the role's default)"
    return f"PostgreSQL database {database!r} on {_host(url)}"


def existing_ledger(settings: Settings) -> str:
    """DATABASE_URL, refusing a default SQLite ledger that does not exist yet: only the web
    app, the worker and `db upgrade` create it, and any other command that finds it missing
    was run from a directory other than the bridge's, where it would make a second, empty one.
    """
    url = settings.database_url
    path = sqlite_file(url) if settings.default_ledger else None
    if path is not None and not path.exists():
        raise Failure(
            f"no ledger at {path}: without DATABASE_URL the ledger is instance/bridge.db in the "
            "current directory; run this from the bridge's directory, or set DATABASE_URL"
        )
    return url


@contextmanager
def reaching(url: str) -> Iterator[None]:
    """A ledger that cannot be reached or refuses the bridge ends the command naming where it
    is and why, without DATABASE_URL's password."""
    password = unquote(urlsplit(url).password or "") if not url.startswith("sqlite") else ""
    try:
        yield
    except LedgerSchemaMissing as exc:
        raise Failure(f"{_where(url)}: {exc.detail}") from exc
    except LedgerUnavailable as exc:
        cause = getattr(exc.__cause__, "orig", None) or exc.__cause__
        reason = (str(cause).strip().splitlines() or [""])[0] if cause else exc.detail
        if password:
            reason = reason.replace(password, "***")
        fix = "check DATABASE_URL and that the database is running"
        raise Failure(f"cannot reach {_where(url)}: {reason} ({fix})") from exc


@contextmanager
def quiet_alembic() -> Iterator[None]:
    """Alembic logs every step at INFO; a schema check is not worth ten lines of log."""
    logger = logging.getLogger("alembic")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextmanager
def ledger_only() -> Iterator[Ledger]:
    """The ledger from DATABASE_URL alone (no MeetBit settings needed)."""
    url = existing_ledger(Settings.from_env(require_meetbit=False))
    with reaching(url), quiet_alembic():
        ledger = open_ledger(url, migrate=url.startswith("sqlite"))
    try:
        with reaching(url):
            yield ledger
    finally:
        ledger.dispose()


@contextmanager
def whole_bridge(*, migrate: bool = False) -> Iterator[Bridge]:
    """The bridge as the web app builds it (MeetBit settings required); `migrate` brings the
    schema up to date on any database and may create the default SQLite ledger (the worker),
    else that must exist (see `existing_ledger`)."""
    from bridge.delivery.service import Bridge

    settings = Settings.from_env()
    if not migrate:
        existing_ledger(settings)
    bridge = Bridge.from_settings(settings)
    url = bridge.settings.database_url
    try:
        with reaching(url):
            if migrate or url.startswith("sqlite"):
                with quiet_alembic():
                    bridge.ledger.ensure_schema()
            yield bridge
    finally:
        bridge.close()


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    for line in [headers, *rows]:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def cut(text: str | None, width: int = 60) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


# The commands register themselves on `cli`; imported last, as they use what is above.
from bridge.cli import deliveries, dev, links, ops  # noqa: E402

__all__ = ["cli", "deliveries", "dev", "links", "main", "ops"]
