"""Runs the sandbox as a real HTTP server: in a background thread for tests, or in the foreground.

`SandboxServer` binds 127.0.0.1 on an ephemeral port by default; `serve` blocks until Ctrl-C
or SIGTERM and then shuts down cleanly.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from bridge.sandbox.app import EXTENSION, create_sandbox_app
from bridge.sandbox.config import SandboxConfig
from bridge.sandbox.state import SandboxState

__all__ = ["SandboxServer", "serve"]

_STOP_WAIT = 5.0


class _QuietHandler(WSGIRequestHandler):
    """No access log line per request: tests make hundreds of them."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class SandboxServer:
    """The sandbox on a real socket, served by a daemon thread; use as a context manager.

    `config` is used as is: changing its fields changes the running sandbox.
    """

    def __init__(
        self, config: SandboxConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.config = config if config is not None else SandboxConfig()
        self.app = create_sandbox_app(self.config)
        self.state: SandboxState = self.app.extensions[EXTENSION]
        self.host = host
        self.port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT`: the tenant origin to give the bridge as MEETBIT_BASE_URL."""
        if self._server is None:
            raise RuntimeError("the sandbox server is not running; call start() first")
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"http://{host}:{self._server.server_port}"

    def start(self) -> SandboxServer:
        if self._server is not None:
            return self
        self.state.stopping.clear()
        server = make_server(
            self.host, self.port, self.app, threaded=True, request_handler=_QuietHandler
        )
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"meetbit-sandbox-{server.server_port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self.state.stopping.set()
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(_STOP_WAIT)
        self.state.join_notifiers(_STOP_WAIT)
        self._server = self._thread = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self._server is not None else "stopped"
        return f"SandboxServer({where})"

    # direct access, no HTTP needed

    def calls(self) -> list[dict[str, Any]]:
        return self.state.snapshot_calls()

    def stats(self) -> dict[str, Any]:
        return self.state.stats()

    def reset(self) -> None:
        """Back to the state it started in: no calls, cancels, bookings or rate-limit history,
        the dice reseeded and every knob as given to the constructor. Cancels and webhooks in
        progress finish first, so one server can serve a whole test session."""
        self.state.reset(restore_config=True)


def serve(config: SandboxConfig, host: str, port: int) -> None:
    """Serve the sandbox in the foreground until Ctrl-C or SIGTERM."""
    server = SandboxServer(config, host=host, port=port).start()
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, _on_signal)
    try:
        secret_hint = (
            config.key_secret if config.key_secret == SandboxConfig.key_secret else "<configured>"
        )
        print(
            f"MeetBit sandbox listening on {server.url}\n"
            f"  MEETBIT_BASE_URL={server.url}\n"
            f"  MEETBIT_ACCESS_KEY_ID={config.key_id}\n"
            f"  MEETBIT_ACCESS_KEY_SECRET={secret_hint}\n"
            f"  rate limit {config.rate_limit:g}/s; introspection at {server.url}/_sandbox/stats\n"
            "Press Ctrl-C to stop.",
            flush=True,
        )
        # A timed wait keeps the main thread responsive to signals on every platform.
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print("MeetBit sandbox stopped.", file=sys.stderr, flush=True)
