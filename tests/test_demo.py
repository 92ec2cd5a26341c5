"""`meetbit-bridge demo` end to end: real gunicorns, a real worker, every preset as expected."""

from __future__ import annotations

import pytest

from bridge.demo import run


@pytest.mark.slow
def test_the_demo_passes_and_prints_every_preset() -> None:
    lines: list[str] = []
    assert run(lines.append) == 0
    table = "\n".join(lines)
    for route in ("zapier", "hubspot-deals", "salesforce-opportunities", "standard-webhooks"):
        assert route in table
    assert "MISMATCH" not in table
    done, total = lines[-1].strip().split(" ", 1)[0].split("/")
    assert done == total and int(total) >= 15
