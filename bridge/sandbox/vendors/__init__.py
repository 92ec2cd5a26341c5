"""Loopback fakes of the vendor APIs the write-back writes to, strict about what they accept
and answering in each vendor's own shapes. Like the rest of the sandbox they import nothing
from the bridge.

Start one on a free port (tests)::

    from bridge.sandbox.vendors import HubSpotFake

    with HubSpotFake() as hubspot:            # or hubspot = HubSpotFake().start(); .stop()
        hubspot.base_url                      # http://127.0.0.1:PORT, a write-back's base_url
        ...                                   # the bridge writes a note
        [note] = hubspot.wait_for_records(1)  # what it stored, in HubSpot's shape
        hubspot.requests()                    # every request (`Received`), refused ones too
        hubspot.modes.throttle(2, retry_after=1)   # the next 2 requests get 429
        hubspot.modes.write_then_drop()       # the next write is stored, the connection dropped
        hubspot.on_write(callback, limit=3)   # callback(record) after each write, 3 times at most

or use the ones mounted in the sandbox (`meetbit-bridge sandbox`, `SandboxServer`), under
`/hubspot`, `/zendesk`, `/pipedrive`, `/freshdesk`, `/salesforce` and `/webhook` of its port:
`SandboxServer().vendors["hubspot"]` is the same kind of object, its `base_url` the prefix.
Over HTTP (another process): `GET <base_url>/_fake/requests`, `GET <base_url>/_fake/records`,
`POST <base_url>/_fake/modes {"throttle": {"count": 2, "retry_after": 1}}`,
`POST <base_url>/_fake/trigger {"url": …, "limit": 3}`, `POST <base_url>/_fake/reset`.

What each fake accepts, its credentials and its answers: the vendor module's docstring.
Modes: `base.Modes`. Layout: base (the pipeline, log, modes, trigger, serving), one module
per vendor, and `VENDORS`, the registry by mount name.
"""

from __future__ import annotations

from bridge.sandbox.vendors.base import Modes, Received, VendorFake
from bridge.sandbox.vendors.freshdesk import FreshdeskFake
from bridge.sandbox.vendors.hubspot import HubSpotFake
from bridge.sandbox.vendors.pipedrive import PipedriveFake
from bridge.sandbox.vendors.salesforce import SalesforceFake
from bridge.sandbox.vendors.webhook import WebhookReceiver, sign_standard_webhook
from bridge.sandbox.vendors.zendesk import ZendeskFake

__all__ = [
    "VENDORS",
    "FreshdeskFake",
    "HubSpotFake",
    "Modes",
    "PipedriveFake",
    "Received",
    "SalesforceFake",
    "VendorFake",
    "WebhookReceiver",
    "ZendeskFake",
    "default_vendors",
    "sign_standard_webhook",
]

# Mount name → fake class; the sandbox mounts one of each under /<name>.
VENDORS: dict[str, type[VendorFake]] = {
    cls.name: cls
    for cls in (
        HubSpotFake,
        ZendeskFake,
        PipedriveFake,
        FreshdeskFake,
        SalesforceFake,
        WebhookReceiver,
    )
}


def default_vendors() -> dict[str, VendorFake]:
    """One fake of each vendor with its sandbox credentials, by mount name."""
    return {name: cls() for name, cls in VENDORS.items()}
