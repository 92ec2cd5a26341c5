"""Runs the sandbox as a real HTTP server: in a background thread for tests, or in the foreground.

`LoopbackServer` serves any WSGI app on 127.0.0.1 (an ephemeral port by default) from a daemon
thread; `SandboxServer` is it with the MeetBit sandbox (and the vendor fakes mounted under
`/hubspot`, `/zendesk`, ...); the vendor fakes use it when started on their own. `serve`
blocks until Ctrl-C or SIGTERM and then shuts down cleanly.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from bridge.sandbox.app import EXTENSION, VENDORS_EXTENSION, create_sandbox_app
from bridge.sandbox.config import SandboxConfig
from bridge.sandbox.state import SandboxState

if TYPE_CHECKING:
    from wsgiref.types import WSGIApplication

    from bridge.sandbox.vendors.base import VendorFake

__all__ = ["LoopbackServer", "SandboxServer", "serve"]

_STOP_WAIT = 5.0


class _QuietHandler(WSGIRequestHandler):
    """No access log line per request: tests make hundreds of them."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class LoopbackServer:
    """A WSGI app on a real socket, served by a daemon thread; use as a context manager.

    Subclasses hook `_stopping()` (cut sleeps short) and `_stopped()` (join background work).
    """

    def __init__(self, app: WSGIApplication, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.wsgi_app = app
        self.host = host
        self.port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT`, the server's origin."""
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not running; call start() first")
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"http://{host}:{self._server.server_port}"

    def _starting(self) -> None:
        pass

    def _stopping(self) -> None:
        pass

    def _stopped(self) -> None:
        pass

    def start(self) -> LoopbackServer:
        if self._server is not None:
            return self
        self._starting()
        server = make_server(
            self.host, self.port, self.wsgi_app, threaded=True, request_handler=_QuietHandler
        )
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"sandbox-server-{server.server_port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping()
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(_STOP_WAIT)
        self._stopped()
        self._server = self._thread = None

    def __enter__(self) -> LoopbackServer:
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
        return f"{type(self).__name__}({where})"


class SandboxServer(LoopbackServer):
    """The sandbox on a real socket, served by a daemon thread; use as a context manager.

    `config` is used as is: changing its fields changes the running sandbox. The vendor fakes
    mounted in it are `vendors` (by name: `hubspot`, `zendesk`, `pipedrive`, `freshdesk`,
    `salesforce`, `webhook`), each with its `base_url` under this server's origin.
    """

    def __init__(
        self, config: SandboxConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.config = config if config is not None else SandboxConfig()
        self.app = create_sandbox_app(self.config)
        self.state: SandboxState = self.app.extensions[EXTENSION]
        self.vendors: dict[str, VendorFake] = self.app.extensions[VENDORS_EXTENSION]
        super().__init__(self.app, host=host, port=port)

    def start(self) -> SandboxServer:
        super().start()
        for fake in self.vendors.values():
            fake.mounted_at(self.url)
        self.state.other_app.start()
        return self

    def __enter__(self) -> SandboxServer:
        return self.start()

    def _starting(self) -> None:
        self.state.stopping.clear()
        for fake in self.vendors.values():
            fake.stopping.clear()

    def _stopping(self) -> None:
        self.state.stopping.set()
        for fake in self.vendors.values():
            fake.stopping.set()

    def _stopped(self) -> None:
        self.state.join_notifiers(_STOP_WAIT)
        self.state.other_app.join(_STOP_WAIT)
        for fake in self.vendors.values():
            fake.join_triggers(_STOP_WAIT)

    # direct access, no HTTP needed

    def calls(self) -> list[dict[str, Any]]:
        return self.state.snapshot_calls()

    def stats(self) -> dict[str, Any]:
        return self.state.stats()

    def reset(self) -> None:
        """Back to the state it started in: no calls, cancels, bookings or rate-limit history,
        the dice reseeded and every knob as given to the constructor. Cancels and webhooks in
        progress finish first, so one server can serve a whole test session. The vendor fakes
        are reset too."""
        self.state.reset(restore_config=True)
        for fake in self.vendors.values():
            fake.reset()


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
            "Vendor fakes (a write-back entry's base_url; what each received: "
            "<base_url>/_fake/requests):\n"
            + "".join(
                f"  {name:<11} {fake.base_url}  {fake.credentials_hint()}\n"
                for name, fake in server.vendors.items()
            )
            + "Press Ctrl-C to stop.",
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
