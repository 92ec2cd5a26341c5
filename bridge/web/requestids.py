"""`X-Request-Id` on every request: the client's when it is a sane token, else a fresh one; on
every response (errors, 404s and `/healthz` included), in every problem body (`problems.py`),
and on every log line written while the request is handled.
"""

from __future__ import annotations

from flask import Flask, Response, g, request

from bridge import logs


def current() -> str | None:
    """This request's id (None outside a request, or before it was assigned)."""
    value = g.get("request_id")
    return value if isinstance(value, str) else None


def register(app: Flask) -> None:
    logs.install_context()

    @app.before_request
    def _take() -> None:
        # Runs before routing errors are raised, so a 404 or 405 has its id too.
        g.request_id = logs.request_id_from(request.headers.get(logs.REQUEST_ID_HEADER))
        g.log_token = logs.bind(request_id=g.request_id)

    @app.after_request
    def _echo(response: Response) -> Response:
        request_id = current()
        if request_id is not None:
            response.headers[logs.REQUEST_ID_HEADER] = request_id
        return response

    @app.teardown_request
    def _forget(exc: BaseException | None) -> None:
        token = g.pop("log_token", None)
        if token is not None:
            logs.unbind(token)
