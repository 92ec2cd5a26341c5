"""The operator console (`/console`): server-rendered pages over the admin operations, for the
people who run the bridge. Absent (404) without `BRIDGE_ADMIN_TOKEN`; signed-in sessions only;
the viewer role reads everything and changes nothing.

Views stay thin: page data comes from `bridge.delivery`; this package owns sign-in, CSRF, the
security headers and the HTML.
"""

from __future__ import annotations

from flask import Flask

from bridge.settings import Settings
from bridge.web.console.auth import Sessions
from bridge.web.console.views import bp

__all__ = ["bp", "init_app"]


def init_app(app: Flask, settings: Settings) -> None:
    """Register the console; its session keys exist only when the console is on. Wrong
    tokens are counted with the admin API's (`admin_failures`)."""
    if settings.admin_token is not None:
        app.extensions["console_sessions"] = Sessions(settings)
    app.register_blueprint(bp)
