"""The MeetBit sandbox: a local simulator of MeetBit's Cancel Event API and outbound webhooks."""

from __future__ import annotations

from bridge.sandbox.app import SandboxConfig, create_sandbox_app, generate_event
from bridge.sandbox.server import SandboxServer, serve
from bridge.sandbox.webhooks import send_meetbit_webhook, sign_meetbit_webhook

__all__ = [
    "SandboxConfig",
    "SandboxServer",
    "create_sandbox_app",
    "generate_event",
    "send_meetbit_webhook",
    "serve",
    "sign_meetbit_webhook",
]
