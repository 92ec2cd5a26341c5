"""Every environment variable the bridge reads, converted and checked in one place.

`Settings.from_env(environ)` reports all bad variables in one `ConfigError`; secrets are kept out
of `repr` so a logged Settings never leaks them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar
from urllib.parse import urlsplit

from bridge.errors import ConfigError

T = TypeVar("T")

# Without DATABASE_URL the ledger is this SQLite file, relative to the directory the bridge is
# run from: the project directory, where the Procfile runs it (and BRIDGE_CONFIG's default is
# relative to the same). Only the web app, the worker and `db upgrade` create it; `check`
# names it as an absolute path.
DEFAULT_DATABASE_URL = "sqlite:///instance/bridge.db"

_RATE_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0}
_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*([a-z]+))?\s*$")


def parse_rate_limit(text: str) -> float | None:
    """`auto` (None: follow MeetBit's headers) or a ceiling as `parse_rate` reads it."""
    return None if text.strip().lower() == "auto" else parse_rate(text)


def parse_rate(text: str) -> float:
    """`5/s`, `300/min` or a bare number of requests per second -> requests per second."""
    match = _RATE_RE.match(text.lower())
    unit = (match.group(2) or "s") if match else ""
    if not match or unit not in _RATE_UNITS:
        raise ValueError("expected auto or requests per period, like 5/s or 300/min")
    rate = float(match.group(1)) / _RATE_UNITS[unit]
    if rate <= 0:
        raise ValueError("must be greater than zero")
    return rate


def parse_timeout(text: str) -> tuple[float, float]:
    """`3.05,10` (connect,read) or one number for both."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) == 1:
        parts = parts * 2
    try:
        connect, read = (float(p) for p in parts)
    except ValueError:
        raise ValueError("expected CONNECT,READ seconds, like 3.05,10") from None
    if connect <= 0 or read <= 0:
        raise ValueError("timeouts must be greater than zero")
    return connect, read


def parse_backoff(text: str) -> tuple[float, float]:
    """`BASE,CAP` seconds of the worker's exponential backoff, e.g. `5,3600`."""
    try:
        base, cap = (float(p) for p in text.split(","))
    except ValueError:
        raise ValueError("expected BASE,CAP seconds, like 5,3600") from None
    if not 0 < base <= cap:
        raise ValueError("expected 0 < BASE <= CAP")
    return base, cap


_EVERY_RE = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_EVERY_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_every(text: str) -> float:
    """`BRIDGE_PURGE_EVERY`: `3600`, `30m`, `6h`, `1d` -> seconds, at least a minute."""
    match = _EVERY_RE.match(text.lower())
    if not match:
        raise ValueError("expected a period like 30m, 6h or 1d")
    seconds = int(match.group(1)) * _EVERY_UNITS[match.group(2)]
    if not 60 <= seconds <= 366 * 86400:
        raise ValueError("expected a period from 1m to 366d")
    return float(seconds)


def _origin(text: str) -> str:
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("expected an origin like https://acme.example.com")
    return text.strip().rstrip("/")


def _positive(conv: Callable[[str], T]) -> Callable[[str], T]:
    def check(text: str) -> T:
        try:
            value = conv(text)
        except ValueError:
            # int()/float() quote the input in their message; settings may hold secrets.
            raise ValueError(f"expected a positive {conv.__name__}") from None
        if value <= 0:  # type: ignore[operator]
            raise ValueError("must be greater than zero")
        return value

    return check


@dataclass(frozen=True)
class Settings:
    meetbit_base_url: str = ""
    meetbit_access_key_id: str = field(default="", repr=False)
    meetbit_access_key_secret: str = field(default="", repr=False)
    # Calls per second, a hard ceiling the headers can only lower; None: `auto`.
    meetbit_rate_limit: float | None = None
    meetbit_timeout: tuple[float, float] = (3.05, 10.0)
    meetbit_webhook_secret: str | None = field(default=None, repr=False)
    config_path: Path = Path("config/bridge.yaml")
    database_url: str = field(default=DEFAULT_DATABASE_URL, repr=False)
    # DATABASE_URL was not set: the ledger is DEFAULT_DATABASE_URL's file.
    default_ledger: bool = False
    admin_token: str | None = field(default=None, repr=False)
    # The console's read-only role and the key of its session cookies (section 12).
    console_viewer_token: str | None = field(default=None, repr=False)
    session_secret: str | None = field(default=None, repr=False)
    # Where alerts are posted; a Slack incoming-webhook URL is itself a credential.
    alert_url: str | None = field(default=None, repr=False)
    sync_deadline: float = 8.0
    max_body: int = 1_048_576
    public_url: str | None = None
    retention_days: int = 30
    # Seconds between purges run by the worker (one process at a time); None: only `db purge`.
    purge_every: float | None = None
    retry_backoff: tuple[float, float] = (5.0, 3600.0)
    write_back_timeout: tuple[float, float] = (3.05, 10.0)
    # json | text; None: json unless stderr is a terminal (bridge.logs reads the variable
    # itself, before settings exist; this reports a bad value with the others).
    log_format: str | None = None
    log_level: str = "info"
    # The whole environment, for the route file's `*_env` secrets; never printed.
    environ: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}), repr=False, compare=False
    )

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, require_meetbit: bool = True
    ) -> Settings:
        """Read and check every variable; `require_meetbit=False` for commands that only touch
        the ledger (`db upgrade`, `db purge`) and so can run without MeetBit credentials."""
        env = dict(os.environ if environ is None else environ)
        problems: list[str] = []
        values: dict[str, Any] = {}

        def read(
            name: str, attr: str, conv: Callable[[str], Any], *, required: bool = False
        ) -> None:
            raw = env.get(name, "").strip()
            if not raw:
                if required:
                    problems.append(f"{name} is required")
                return
            try:
                values[attr] = conv(raw)
            except ValueError as exc:
                # The message names the variable, never its value: it may be a secret.
                problems.append(f"{name} is invalid: {exc}")

        read("MEETBIT_BASE_URL", "meetbit_base_url", _origin, required=require_meetbit)
        read("MEETBIT_ACCESS_KEY_ID", "meetbit_access_key_id", str, required=require_meetbit)
        read(
            "MEETBIT_ACCESS_KEY_SECRET", "meetbit_access_key_secret", str, required=require_meetbit
        )
        read("MEETBIT_RATE_LIMIT", "meetbit_rate_limit", parse_rate_limit)
        read("MEETBIT_TIMEOUT", "meetbit_timeout", parse_timeout)
        read("MEETBIT_WEBHOOK_SECRET", "meetbit_webhook_secret", str)
        read("BRIDGE_CONFIG", "config_path", Path)
        read("DATABASE_URL", "database_url", _database_url)
        read("BRIDGE_ADMIN_TOKEN", "admin_token", str)
        read("BRIDGE_CONSOLE_VIEWER_TOKEN", "console_viewer_token", str)
        read("BRIDGE_SESSION_SECRET", "session_secret", str)
        read("BRIDGE_ALERT_URL", "alert_url", _alert_url)
        read("BRIDGE_SYNC_DEADLINE", "sync_deadline", _positive(float))
        read("BRIDGE_MAX_BODY", "max_body", _positive(int))
        read("BRIDGE_PUBLIC_URL", "public_url", _origin)
        read("BRIDGE_RETENTION_DAYS", "retention_days", _positive(int))
        read("BRIDGE_PURGE_EVERY", "purge_every", parse_every)
        read("BRIDGE_RETRY_BACKOFF", "retry_backoff", parse_backoff)
        read("BRIDGE_WRITE_BACK_TIMEOUT", "write_back_timeout", parse_timeout)
        read("BRIDGE_LOG_FORMAT", "log_format", _one_of("json", "text"))
        read("LOG_LEVEL", "log_level", _one_of("debug", "info", "warning", "error", "critical"))
        viewer = values.get("console_viewer_token")
        if viewer is not None and viewer == values.get("admin_token"):
            # One token could not say which role signs in.
            problems.append(
                "BRIDGE_CONSOLE_VIEWER_TOKEN is invalid: it must differ from BRIDGE_ADMIN_TOKEN"
            )
        if problems:
            raise ConfigError(problems)
        values["default_ledger"] = "database_url" not in values
        return cls(environ=MappingProxyType(env), **values)


DOTENV_SKIP_ENV = "BRIDGE_SKIP_DOTENV"


def load_dotenv() -> bool:
    """Read `.env` for a local run, as the `flask` command does: the nearest one found upward
    from the working directory, never overriding a variable the environment already has.
    `BRIDGE_SKIP_DOTENV=1` turns it off. True if a file was read."""
    if os.environ.get(DOTENV_SKIP_ENV, "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    import dotenv

    path = dotenv.find_dotenv(usecwd=True)
    return bool(path) and dotenv.load_dotenv(path, override=False, encoding="utf-8")


def _one_of(*choices: str) -> Callable[[str], str]:
    def check(text: str) -> str:
        if text.lower() not in choices:
            raise ValueError("expected one of " + ", ".join(choices))
        return text.lower()

    return check


def _alert_url(text: str) -> str:
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        # Not quoted: the URL is a secret.
        raise ValueError("expected an http(s) URL, like https://hooks.slack.com/services/...")
    return text.strip()


def _database_url(text: str) -> str:
    scheme = text.split(":", 1)[0].split("+", 1)[0]
    if scheme not in ("sqlite", "postgres", "postgresql"):
        raise ValueError("expected sqlite:///path or postgresql://...")
    return text
