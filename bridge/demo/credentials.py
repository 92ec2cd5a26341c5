"""The demo's secrets and ids: never use these outside the demo."""

from __future__ import annotations

__all__ = ["ADMIN_TOKEN", "ENV", "SALESFORCE_ORG"]

ADMIN_TOKEN = "demo-admin-token"
# What the demo's route file reads through its `*_env` keys.
ENV = {
    "ZAPIER_TOKEN": "demo-zapier-token",
    "ZAPIER_FORM_USER": "zapier",
    "ZAPIER_FORM_PASSWORD": "demo-zapier-password",
    "N8N_HMAC_SECRET": "demo-n8n-hmac-secret",
    "HUBSPOT_CLIENT_SECRET": "demo-hubspot-client-secret",
    # The sandbox's HubSpot fake accepts this private app token.
    "HUBSPOT_PRIVATE_APP_TOKEN": "pat-na1-sandbox-hubspot",
    # And the sandbox's other vendor fakes these (their defaults).
    "PIPEDRIVE_API_TOKEN": "pipedrive-sandbox-api-token",
    "ZENDESK_EMAIL": "agent@sandbox.zendesk.test",
    "ZENDESK_API_TOKEN": "zendesk-sandbox-api-token",
    "FRESHDESK_API_KEY": "freshdesk-sandbox-api-key",
    "SALESFORCE_CLIENT_ID": "salesforce-sandbox-client-id",
    "SALESFORCE_CLIENT_SECRET": "salesforce-sandbox-client-secret",
    "PIPEDRIVE_WEBHOOK_USER": "pipedrive",
    "PIPEDRIVE_WEBHOOK_PASSWORD": "demo-pipedrive-password",
    "ZENDESK_SIGNING_SECRET": "ZGVtby16ZW5kZXNrLXNpZ25pbmctc2VjcmV0",
    "FRESHDESK_WEBHOOK_TOKEN": "demo-freshdesk-token",
    # A base64 key behind the `whsec_` prefix, as Standard Webhooks senders show it.
    "STANDARD_WEBHOOK_SECRET": "whsec_ZGVtby1zdGFuZGFyZC13ZWJob29rcy1rZXktMzJi",
}
# The organization of the Salesforce sample (payloads/salesforce/closed_lost.xml).
SALESFORCE_ORG = "00D000000000062EAA"
