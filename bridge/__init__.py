"""meetbit-bridge: cancel MeetBit meetings from verified CRM, helpdesk and automation webhooks."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from bridge.settings import Settings

__all__ = ["create_app"]


def create_app(settings: Settings | None = None) -> Flask:
    """The app factory (`gunicorn 'bridge:create_app()'`).

    Imported lazily so that `import bridge.sandbox` or `bridge.meetbit` does not pull in the
    whole web application.
    """
    from bridge.web.app import create_app as _create_app

    return _create_app(settings)
