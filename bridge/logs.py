"""Log lines for the people on call: one JSON object per record (`BRIDGE_LOG_FORMAT=json`, the
default when stderr is not a terminal) or one text line, for every logger of the process (the
bridge's, gunicorn's, alembic's, Python's warnings), each with its time, level, pid and the
request id of the request or delivery in hand.

The fields of a line come from `extra=` and from what `bound` holds for the current context
(a request, a delivery attempt). Nothing here decides what is logged: callers pass ids,
statuses and reasons, never a body, a header value or a secret. Whatever a field holds, it
cannot start a line of its own: JSON escapes control characters, the text format shows them
as `\\xNN` and indents a traceback's continuation lines.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from types import MappingProxyType
from typing import IO, Any

from pythonjsonlogger.json import JsonFormatter as _LibraryJsonFormatter

from bridge.core.limits import MAX_REQUEST_ID

__all__ = [
    "FORMAT_ENV",
    "FORMATS",
    "LEVEL_ENV",
    "REQUEST_ID_HEADER",
    "ContextFilter",
    "JsonFormatter",
    "TextFormatter",
    "bind",
    "bound",
    "configure",
    "current",
    "formatter",
    "is_json",
    "log_format",
    "request_id_from",
    "unbind",
]

FORMAT_ENV = "BRIDGE_LOG_FORMAT"
LEVEL_ENV = "LOG_LEVEL"
FORMATS = ("json", "text")
REQUEST_ID_HEADER = "X-Request-Id"
# A request id a client may choose: a token safe in a header, a log line and a URL.
_SANE_REQUEST_ID = re.compile(rf"[A-Za-z0-9._-]{{1,{MAX_REQUEST_ID}}}")

# What every line of the current context carries (request_id, delivery_id, ...).
_NONE: Mapping[str, Any] = MappingProxyType({})
_fields: ContextVar[Mapping[str, Any]] = ContextVar("bridge_log_fields", default=_NONE)
# The LogRecord's own attributes: everything else on a record came from `extra=` or `bound`.
_RECORD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def request_id_from(value: str | None) -> str:
    """The client's `X-Request-Id` when it is a sane token (<= 128 of `[A-Za-z0-9._-]`), else
    a fresh one (32 hex digits)."""
    if value is not None and _SANE_REQUEST_ID.fullmatch(value):
        return value
    return uuid.uuid4().hex


def bind(**fields: Any) -> Token[Mapping[str, Any]]:
    """Add `fields` to every line of the current context until `unbind(token)`."""
    return _fields.set({**_fields.get(), **fields})


def unbind(token: Token[Mapping[str, Any]]) -> None:
    _fields.reset(token)


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """`fields` on every line logged inside the block (None values leave a field as it was)."""
    token = bind(**{k: v for k, v in fields.items() if v is not None})
    try:
        yield
    finally:
        unbind(token)


def current(name: str) -> Any:
    """A field the current context carries (`current("request_id")`), or None."""
    return _fields.get().get(name)


class ContextFilter(logging.Filter):
    """Copies the context's fields onto each record. A name the context holds must not be
    passed in `extra=` too (logging refuses to overwrite a record's attribute): bind it."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _fields.get().items():
            if name not in record.__dict__:
                setattr(record, name, value)
        return True


_FILTER = ContextFilter()


def install_context() -> None:
    """Put the context's fields on every record as it is made, whichever handler (gunicorn's,
    a test runner's, an embedding application's) formats it. Idempotent."""
    factory = logging.getLogRecordFactory()
    if getattr(factory, "_bridge_context", False):
        return

    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        _FILTER.filter(record)
        return record

    make._bridge_context = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(make)


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _RECORD_ATTRS}


def _time(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


class JsonFormatter(_LibraryJsonFormatter):
    """python-json-logger's formatter with the bridge's field names: `time` (ISO 8601 UTC),
    `level`, `logger`, `pid`, `message`, then the record's fields; `exc_info` holds a
    traceback as one string."""

    def __init__(self) -> None:
        super().__init__(
            "%(message)s",
            json_ensure_ascii=False,
            json_default=_json_default,
        )

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["time"] = _time(record)
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        log_data["pid"] = record.process
        super().add_fields(log_data, record, message_dict)


def _json_default(value: Any) -> Any:
    # Anything json cannot write is written as its text, never dropped or fatal.
    return str(value)


class TextFormatter(logging.Formatter):
    """`2026-01-02T03:04:05.678+00:00 INFO pid=12 bridge.delivery.dispatch: message key=value`;
    control characters as `\\xNN`, values with spaces or quotes in JSON quotes."""

    def format(self, record: logging.LogRecord) -> str:
        message = _escape(record.getMessage())
        fields = " ".join(f"{k}={_text_value(v)}" for k, v in _extras(record).items())
        line = f"{_time(record)} {record.levelname} pid={record.process} {record.name}: {message}"
        if fields:
            line += " " + fields
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            # Continuation lines are indented: none can pass for a record of its own.
            line += "".join(f"\n    {_escape(part)}" for part in record.exc_text.splitlines())
        return line


def _escape(text: str) -> str:
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _text_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if text == "" or any(c in text for c in ' "=') or _CONTROL.search(text):
        return json.dumps(text)
    return text


def log_format(environ: Mapping[str, str] | None = None, stream: IO[str] | None = None) -> str:
    """`BRIDGE_LOG_FORMAT` (json | text); unset or unknown: json unless `stream` (stderr) is a
    terminal. Settings reports an unknown value; logging must work before settings are read."""
    env = os.environ if environ is None else environ
    chosen = env.get(FORMAT_ENV, "").strip().lower()
    if chosen in FORMATS:
        return chosen
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return "text" if callable(isatty) and isatty() else "json"


def formatter(fmt: str | None = None) -> logging.Formatter:
    return JsonFormatter() if (fmt or log_format()) == "json" else TextFormatter()


def configured() -> bool:
    """True once `configure` has set this process's logging up."""
    return _installed() is not None


def is_json() -> bool:
    """True when this process's root handler writes JSON (set up by `configure`)."""
    handler = _installed()
    return handler is not None and isinstance(handler.formatter, JsonFormatter)


class _BridgeHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The one handler `configure` installs on the root logger, recognised when run again."""


def _installed() -> logging.Handler | None:
    for handler in logging.getLogger().handlers:
        if isinstance(handler, _BridgeHandler):
            return handler
    return None


def configure(
    *,
    fmt: str | None = None,
    level: str | None = None,
    stream: IO[str] | None = None,
    only_if_unconfigured: bool = False,
) -> None:
    """Send every logger's records to stderr (or `stream`) in the configured format.

    Replaces the handler an earlier call installed. `only_if_unconfigured`: leave the root
    logger alone when something else (a test runner, an embedding application) gave it a
    handler. `LOG_LEVEL` (gunicorn's variable, default info) is the level of every logger.
    """
    root = logging.getLogger()
    mine = _installed()
    if only_if_unconfigured and (mine is not None or root.handlers):
        return
    if mine is not None:
        root.removeHandler(mine)
    handler = _BridgeHandler(stream or sys.stderr)
    handler.setFormatter(formatter(fmt or log_format(stream=stream)))
    root.addHandler(handler)
    install_context()
    name = (level or os.environ.get(LEVEL_ENV) or "info").strip().upper()
    root.setLevel(logging.getLevelNamesMapping().get(name, logging.INFO))
    logging.getLogger("bridge").setLevel(root.level)
    # Alembic narrates every schema check at INFO (the web app checks at startup): kept for
    # LOG_LEVEL=debug.
    if root.level > logging.DEBUG:
        logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))
    # warnings.warn(...) becomes a record of logger `py.warnings`, in the same format.
    logging.captureWarnings(True)


def adopt(handlers: list[logging.Handler], fmt: str | None = None) -> None:
    """Give another logger's handlers (gunicorn's) the bridge's format."""
    install_context()
    for handler in handlers:
        handler.setFormatter(formatter(fmt))
