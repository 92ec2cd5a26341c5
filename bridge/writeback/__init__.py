"""The sink registry: each `write_back[].to` name mapped to the class that writes it."""

from __future__ import annotations

from bridge.writeback.base import (
    TEXT_MAX,
    ErrorKind,
    Job,
    Sink,
    SinkConfig,
    SinkError,
    retry_after_seconds,
)
from bridge.writeback.freshdesk import FreshdeskNote
from bridge.writeback.hubspot import HubSpotNote
from bridge.writeback.pipedrive import PipedriveNote
from bridge.writeback.salesforce import SalesforceTask
from bridge.writeback.webhook import SignedWebhook
from bridge.writeback.zendesk import ZendeskComment

SINKS: dict[str, type[Sink]] = {
    cls.name: cls
    for cls in (
        HubSpotNote,
        ZendeskComment,
        PipedriveNote,
        FreshdeskNote,
        SalesforceTask,
        SignedWebhook,
    )
}

# Every credential key any sink reads: the route entry's schema declares them all.
CREDENTIAL_KEYS = tuple(
    sorted(
        {key for cls in SINKS.values() for key in cls.credentials}
        | {key for cls in SINKS.values() for choice in cls.credential_choices for key in choice}
    )
)

__all__ = [
    "CREDENTIAL_KEYS",
    "SINKS",
    "TEXT_MAX",
    "ErrorKind",
    "Job",
    "Sink",
    "SinkConfig",
    "SinkError",
    "retry_after_seconds",
]
