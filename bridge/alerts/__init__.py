"""Alerts for what needs a person: the kinds (`KINDS`, the one place a kind is declared) and
the one client of the alert receiver (`BRIDGE_ALERT_URL`, a Slack-compatible incoming webhook
or any URL taking JSON). When to alert and how often is the services' business
(`bridge.delivery.alerting`); this package only knows what a message says and how it is sent.
"""

from __future__ import annotations

from bridge.alerts.client import AlertClient, AlertFailed
from bridge.alerts.kinds import KINDS, AlertKind, message

__all__ = ["KINDS", "AlertClient", "AlertFailed", "AlertKind", "message"]
