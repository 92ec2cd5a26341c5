"""`meetbit-bridge demo` and what it is made of: the runner (runner.py), the signed samples
(samples.py), the vendors' signers (signers.py), the demo secrets (credentials.py) and the
payload corpus (corpus.py, payloads/) that the tests and the README's examples use too.

Nothing in the product imports this package (tests/test_demo.py checks); the CLI's `demo`
command imports it when it runs.
"""

from __future__ import annotations

from bridge.demo.corpus import PAYLOADS, payload, payload_path
from bridge.demo.runner import run

__all__ = ["PAYLOADS", "payload", "payload_path", "run"]
