"""Real servers on loopback: a WSGI app under gunicorn (a process of its own) or in a thread."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from werkzeug.serving import make_server

__all__ = [
    "GunicornServer",
    "ServerStartError",
    "WSGIApp",
    "clean_environ",
    "free_port",
    "wsgi_server",
]

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# Generous: gunicorn imports the app in each worker, and a cold machine is slow.
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
LOG_TAIL_LINES = 40
# What a bridge process reads (bridge/settings.py) and what changes how gunicorn runs: a server
# started here gets these only from its caller, never from the caller's environment.
_SETTING_PREFIXES = ("MEETBIT_", "BRIDGE_")
_SETTING_NAMES = frozenset({"DATABASE_URL", "PROMETHEUS_MULTIPROC_DIR", "GUNICORN_CMD_ARGS"})


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_environ(
    settings: Mapping[str, str] | None = None, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """`base` (default: this process's environment) without any bridge or gunicorn setting,
    then `settings` on top: a child process sees exactly the settings it is given."""
    inherited = os.environ if base is None else base
    env = {
        name: value
        for name, value in inherited.items()
        if name not in _SETTING_NAMES and not name.startswith(_SETTING_PREFIXES)
    }
    env.update(settings or {})
    return env


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last `lines` lines of a log file ('' when it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class ServerStartError(RuntimeError):
    """A server exited or never became ready; `log_tail` holds the end of its log."""

    def __init__(self, what: str, log_path: Path) -> None:
        self.log_path = log_path
        self.log_tail = log_tail(log_path)
        tail = self.log_tail or "(the log is empty)"
        super().__init__(f"{what}\n--- the end of its log ---\n{tail}")


@dataclass
class GunicornServer:
    """A WSGI app under real gunicorn (gthread): the bridge as the Procfile runs it, or the
    sandbox (one worker, so that one process holds its state). Use as a context manager.

    The process gets `env` and nothing of the caller's bridge settings (`clean_environ`). Its
    output goes to `log_path` (a temporary file when not given, removed on `stop`), so that a
    server that cannot start says why in the `ServerStartError` it raises.
    """

    env: Mapping[str, str]
    app: str = "bridge:create_app()"
    ready_path: str = "/readyz"
    workers: int = 2
    threads: int = 8
    port: int = field(default_factory=free_port)
    log_path: Path | None = None
    # The working directory; gunicorn reads ./gunicorn.conf.py from it when there is one.
    cwd: Path | None = None
    # A gunicorn config file (`config/gunicorn.conf.py`: its logging, hooks and scrubbing);
    # the options above still win over what it sets.
    config: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    _own_log: bool = field(default=False, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "gunicorn", self.app,
            "--bind", f"127.0.0.1:{self.port}",
            "--workers", str(self.workers),
            "--worker-class", "gthread",
            "--threads", str(self.threads),
            "--timeout", "30",
            "--graceful-timeout", "5",
            *(["--config", str(self.config)] if self.config is not None else []),
        ]  # fmt: skip

    def start(self) -> GunicornServer:
        if self.log_path is None:
            handle, name = tempfile.mkstemp(prefix="gunicorn-", suffix=".log")
            os.close(handle)
            self.log_path, self._own_log = Path(name), True
        # Popen duplicates the descriptor, so the file can be closed right away.
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(
                self.command(),
                env=clean_environ(self.env),
                cwd=self.cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_ready(self) -> None:
        assert self.process is not None and self.log_path is not None
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise ServerStartError(f"{self.app}: gunicorn exited with {code}", self.log_path)
            if self._ready():
                return
            time.sleep(0.1)
        raise ServerStartError(
            f"{self.app} was not ready within {READY_TIMEOUT:.0f} s", self.log_path
        )

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + self.ready_path, timeout=1) as answer:
                return bool(answer.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._own_log and self.log_path is not None:
            self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> GunicornServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def wsgi_server(app: WSGIApp) -> Iterator[str]:
    """Serve a WSGI app (a test double, or the bridge itself) on an ephemeral loopback port,
    in a thread; yields its URL (`http://127.0.0.1:PORT`)."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
