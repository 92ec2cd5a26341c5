from __future__ import annotations

from pathlib import Path

import pytest

from bridge.errors import ConfigError
from bridge.settings import Settings, parse_rate, parse_timeout

BASE = {
    "MEETBIT_BASE_URL": "https://acme.example.com/",
    "MEETBIT_ACCESS_KEY_ID": "MBP-key",
    "MEETBIT_ACCESS_KEY_SECRET": "s3cr3t-value",
}


def test_defaults_follow_the_contract() -> None:
    s = Settings.from_env(BASE)
    assert s.meetbit_base_url == "https://acme.example.com"
    assert s.meetbit_rate_limit is None  # auto: 5/s until MeetBit's headers say otherwise
    assert s.meetbit_timeout == (3.05, 10.0)
    assert s.config_path == Path("config/bridge.yaml")
    assert s.database_url == "sqlite:///instance/bridge.db"
    assert (s.sync_deadline, s.max_body, s.retention_days) == (8.0, 1_048_576, 30)
    assert s.admin_token is None and s.meetbit_webhook_secret is None and s.public_url is None


def test_every_bad_variable_is_named_at_once() -> None:
    env = {
        "MEETBIT_BASE_URL": "acme.example.com",
        "MEETBIT_RATE_LIMIT": "fast",
        "MEETBIT_TIMEOUT": "1,2,3",
        "BRIDGE_SYNC_DEADLINE": "-1",
        "BRIDGE_MAX_BODY": "big",
        "DATABASE_URL": "mysql://x",
    }
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    text = str(info.value)
    for name in (
        "MEETBIT_BASE_URL",
        "MEETBIT_ACCESS_KEY_ID is required",
        "MEETBIT_ACCESS_KEY_SECRET is required",
        "MEETBIT_RATE_LIMIT",
        "MEETBIT_TIMEOUT",
        "BRIDGE_SYNC_DEADLINE",
        "BRIDGE_MAX_BODY",
        "DATABASE_URL",
    ):
        assert name in text
    assert len(info.value.problems) == 8


def test_secrets_never_in_repr_or_errors() -> None:
    env = {**BASE, "BRIDGE_ADMIN_TOKEN": "admin-tok", "MEETBIT_WEBHOOK_SECRET": "wh-secret"}
    text = repr(Settings.from_env(env))
    for secret in ("s3cr3t-value", "admin-tok", "wh-secret", "MBP-key"):
        assert secret not in text
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**BASE, "BRIDGE_RETENTION_DAYS": "s3cr3t-value"})
    assert "s3cr3t-value" not in str(info.value)


def test_db_commands_need_no_meetbit_credentials() -> None:
    s = Settings.from_env({"DATABASE_URL": "postgresql://db/x"}, require_meetbit=False)
    assert s.database_url == "postgresql://db/x"


@pytest.mark.parametrize(
    ("text", "rate"), [("5/s", 5.0), ("5", 5.0), ("300/min", 5.0), ("0.5/s", 0.5), ("60/m", 1.0)]
)
def test_rate_forms(text: str, rate: float) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["0/s", "5/h", "x", "-1"])
def test_bad_rates(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rate(text)


def test_timeout_forms() -> None:
    assert parse_timeout("3.05,10") == (3.05, 10.0)
    assert parse_timeout("4") == (4.0, 4.0)
    with pytest.raises(ValueError):
        parse_timeout("0,1")


@pytest.mark.parametrize(
    ("text", "limit"), [("auto", None), ("AUTO", None), ("5/s", 5.0), ("300/min", 5.0)]
)
def test_rate_limit_is_auto_or_a_ceiling(text: str, limit: float | None) -> None:
    assert Settings.from_env({**BASE, "MEETBIT_RATE_LIMIT": text}).meetbit_rate_limit == limit
