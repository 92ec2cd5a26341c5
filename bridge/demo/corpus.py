"""The payload corpus: realistic webhook bodies per preset (`payloads/<preset>/<name>`), shipped
with the package. One corpus for the demo, the tests and the README's examples."""

from __future__ import annotations

from pathlib import Path

__all__ = ["PAYLOADS", "payload", "payload_path"]

# Package data next to this module (pyproject.toml's [tool.setuptools.package-data]).
PAYLOADS = Path(__file__).resolve().parent / "payloads"


def payload_path(preset: str, name: str) -> Path:
    """The file of one body, e.g. `payload_path("hubspot", "deal_batch.json")`."""
    path = PAYLOADS / preset / name
    if not path.is_file():
        raise FileNotFoundError(f"no payload {preset}/{name} in {PAYLOADS}")
    return path


def payload(preset: str, name: str) -> bytes:
    """The raw bytes of one body, exactly as a sender would send them (and sign them)."""
    return payload_path(preset, name).read_bytes()
