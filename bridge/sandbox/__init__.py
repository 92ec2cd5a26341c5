"""The MeetBit sandbox: a local simulator of MeetBit's Cancel Event API and outbound webhooks.

It imports nothing from the rest of the bridge (tests/test_sandbox.py checks), so it can stand in
for MeetBit in front of any client. Layout: config (knobs), limiter (per-key rate limit),
faults (latency, failures, seed), events (the event store), calls (what it was asked), answers
(MeetBit's words), webhooks (signed outbound webhooks), state (the parts together, reset),
app (the Flask routes), server (a real socket, `serve`).
"""

from __future__ import annotations

from bridge.sandbox.app import create_sandbox_app
from bridge.sandbox.config import SandboxConfig
from bridge.sandbox.events import generate_event
from bridge.sandbox.server import SandboxServer, serve
from bridge.sandbox.state import SandboxState
from bridge.sandbox.webhooks import send_meetbit_webhook, sign_meetbit_webhook

__all__ = [
    "SandboxConfig",
    "SandboxServer",
    "SandboxState",
    "create_sandbox_app",
    "generate_event",
    "send_meetbit_webhook",
    "serve",
    "sign_meetbit_webhook",
]
