"""The preset registry: each preset name mapped to the class that verifies and parses it."""

from __future__ import annotations

from bridge.sources.base import (
    AuthConfig,
    HmacConfig,
    InboundRequest,
    Item,
    Parsed,
    Source,
    SourceOptions,
    body_hash_key,
)
from bridge.sources.freshdesk import FreshdeskSource
from bridge.sources.generic import GenericSource
from bridge.sources.hubspot import HubSpotSource, HubSpotWorkflowSource
from bridge.sources.pipedrive import PipedriveSource
from bridge.sources.salesforce import SalesforceSource
from bridge.sources.standard import StandardWebhooksSource
from bridge.sources.zendesk import ZendeskSource

PRESETS: dict[str, type[Source]] = {
    cls.name: cls
    for cls in (
        HubSpotSource,
        HubSpotWorkflowSource,
        PipedriveSource,
        SalesforceSource,
        ZendeskSource,
        FreshdeskSource,
        StandardWebhooksSource,
        GenericSource,
    )
}


def get_preset(name: str) -> type[Source]:
    """The preset class for `name`; ValueError naming the known presets otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        known = ", ".join(sorted(PRESETS))
        raise ValueError(f"unknown preset {name!r}; known presets: {known}") from None


__all__ = [
    "PRESETS",
    "AuthConfig",
    "HmacConfig",
    "InboundRequest",
    "Item",
    "Parsed",
    "Source",
    "SourceOptions",
    "body_hash_key",
    "get_preset",
]
