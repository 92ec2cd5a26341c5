"""The sandbox's knobs: one mutable dataclass, and the schema that checks it (startup and PATCH)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, validate
from marshmallow import fields as mf

__all__ = ["SECRET_FIELDS", "ConfigSchema", "SandboxConfig", "check_config"]

# Masked wherever the config is shown.
SECRET_FIELDS = ("key_secret", "denied_key_secret", "notify_secret")


@dataclass
class SandboxConfig:
    """Every knob of the sandbox; change them at runtime with `PATCH /_sandbox/config`."""

    key_id: str = "MBP-sandbox"
    key_secret: str = "sandbox-secret"
    # A key whose Role lacks events.delete.*: answered 401 `Access Denied.`
    denied_key_id: str = "MBP-denied"
    denied_key_secret: str = "denied-secret"
    rate_limit: float = 5.0  # requests per second per key id (Client); 0 = unlimited
    tenant_limit: float = 0.0  # requests per second of every key together (Tenant); 0 = none
    window: str = "calendar"  # how calls are counted: per calendar second, or sliding
    headers: str = "draft06"  # rate-limit headers: draft06, draft, both, none
    # Another app of the same tenant, calling this many times per second (at even offsets in
    # each calendar second, never more), counted against the tenant's limit.
    other_app_rate: float = 0.0
    other_key_id: str = "MBP-other-app"
    retry_after: int = 1  # real MeetBit says 60; small here so tests finish
    latency: float = 0.0  # seconds added to every cancel
    spike_rate: float = 0.0  # fraction of cancels that get spike_latency on top
    spike_latency: float = 0.0
    failure_rate: float = 0.0  # fraction of cancels answered 500 before doing anything
    seed: int | None = None  # seeds the failure/spike dice, for reproducible runs
    missing_from: int = 900_000  # event ids at or above this do not exist (404)
    notify_url: str | None = None  # where to send signed MeetBit webhooks, if anywhere
    notify_secret: str | None = None

    def public(self) -> dict[str, Any]:
        """The config as JSON, secrets masked."""
        data = asdict(self)
        for name in SECRET_FIELDS:
            if data[name] is not None:
                data[name] = "***"
        return data

    def copy_from(self, other: SandboxConfig) -> None:
        """Take every value of `other`, in place: whoever holds this object sees the change."""
        for f in fields(self):
            setattr(self, f.name, getattr(other, f.name))


class ConfigSchema(Schema):
    """Validates a (partial) SandboxConfig from `PATCH /_sandbox/config`."""

    class Meta:
        unknown = RAISE

    key_id = mf.String(validate=validate.Length(min=1))
    key_secret = mf.String(validate=validate.Length(min=1))
    denied_key_id = mf.String(validate=validate.Length(min=1))
    denied_key_secret = mf.String(validate=validate.Length(min=1))
    rate_limit = mf.Float(validate=validate.Range(min=0))
    tenant_limit = mf.Float(validate=validate.Range(min=0))
    window = mf.String(validate=validate.OneOf(["calendar", "sliding"]))
    headers = mf.String(validate=validate.OneOf(["draft06", "draft", "both", "none"]))
    other_app_rate = mf.Float(validate=validate.Range(min=0, max=1000))
    other_key_id = mf.String(validate=validate.Length(min=1))
    retry_after = mf.Integer(validate=validate.Range(min=0))
    latency = mf.Float(validate=validate.Range(min=0))
    spike_rate = mf.Float(validate=validate.Range(min=0, max=1))
    spike_latency = mf.Float(validate=validate.Range(min=0))
    failure_rate = mf.Float(validate=validate.Range(min=0, max=1))
    seed = mf.Integer(allow_none=True)
    missing_from = mf.Integer(validate=validate.Range(min=1))
    notify_url = mf.Url(allow_none=True, require_tld=False)
    notify_secret = mf.String(allow_none=True)


def check_config(config: SandboxConfig) -> None:
    """Raise ValueError naming every bad knob of a config built in code."""
    try:
        ConfigSchema().load({f.name: getattr(config, f.name) for f in fields(config)})
    except ValidationError as exc:
        raise ValueError(f"invalid sandbox config: {exc.messages}") from exc
