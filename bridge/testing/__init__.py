"""Public test support, as `flask.testing` is for Flask: real servers on loopback for tests,
benchmarks and the demo. Nothing in the product imports it.

- `GunicornServer`: a WSGI app (the bridge, or the sandbox) under real gunicorn, started with
  exactly the settings given (none of the caller's `MEETBIT_*`, `BRIDGE_*`, `DATABASE_URL`);
  when it cannot start, the error carries the tail of gunicorn's log.
- `wsgi_server`: any WSGI app (a test double, or the bridge itself) in a thread, on an
  ephemeral port.
- `free_port`, `clean_environ`.
"""

from __future__ import annotations

from bridge.testing.servers import (
    GunicornServer,
    ServerStartError,
    WSGIApp,
    clean_environ,
    free_port,
    wsgi_server,
)

__all__ = [
    "GunicornServer",
    "ServerStartError",
    "WSGIApp",
    "clean_environ",
    "free_port",
    "wsgi_server",
]
