"""The app factory: wiring only. Reads settings, builds the Bridge, registers blueprints and the
error renderer. Nothing here opens a socket or a file at import time.
"""

from __future__ import annotations

import logging

from flask import Flask

from bridge import logs, tracing
from bridge.delivery.service import Bridge
from bridge.settings import Settings
from bridge.web import requestids
from bridge.web.problems import register_error_handlers
from bridge.web.throttle import FailedTokens


def create_app(settings: Settings | None = None) -> Flask:
    # Under gunicorn config/gunicorn.conf.py has set logging up already; run any other way
    # (flask run, a WSGI host) the bridge's lines still reach stderr, unless the host (a test
    # runner) set up logging of its own.
    logs.configure(only_if_unconfigured=True)
    if not logs.configured():
        # The host's logging: the bridge's INFO lines (one per webhook, per MeetBit call)
        # still reach its handlers.
        logging.getLogger("bridge").setLevel(logging.INFO)
    settings = settings or Settings.from_env()
    # Before the ledger's engine exists, so that it is instrumented too.
    tracing.setup(settings.environ)
    app = Flask("bridge")
    # werkzeug answers 413 before the view reads a byte of a larger body.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body
    app.json.sort_keys = False  # type: ignore[attr-defined]
    bridge = Bridge.from_settings(settings)
    if settings.database_url.startswith("sqlite"):
        # The default SQLite ledger is created on first use; PostgreSQL waits for
        # `meetbit-bridge db upgrade` (the Procfile's release phase).
        bridge.ledger.ensure_schema()
    app.extensions["bridge"] = bridge
    app.extensions["admin_failures"] = FailedTokens()

    from bridge.web import admin, console, hooks, meetbit_hooks, ops

    for module in (hooks, meetbit_hooks, admin, ops):
        app.register_blueprint(module.bp)
    console.init_app(app, settings)
    requestids.register(app)
    tracing.instrument_app(app)
    register_error_handlers(app)
    return app
