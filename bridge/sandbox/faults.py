"""Injected trouble: latency, latency spikes and 500s, rolled on dice seeded by the config so a
failing run can be repeated exactly. The MeetBit sandbox and the vendor fakes share it."""

from __future__ import annotations

import random
import threading
from typing import Protocol

__all__ = ["FaultKnobs", "Faults"]


class FaultKnobs(Protocol):
    """What the dice read, live: `SandboxConfig` and the vendor fakes' knobs both have it."""

    latency: float
    spike_rate: float
    spike_latency: float
    failure_rate: float
    seed: int | None


class Faults:
    """The dice of one sandbox (or fake); reads rates from the (live) config."""

    def __init__(self, config: FaultKnobs) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._rng = random.Random(config.seed)

    def reseed(self) -> None:
        """Start the dice over from the configured seed."""
        with self._lock:
            self._rng = random.Random(self.config.seed)

    def _roll(self, rate: float) -> bool:
        if not rate:
            return False
        with self._lock:
            return self._rng.random() < rate

    def delay(self) -> float:
        """Seconds to hold this request before answering."""
        config = self.config
        spike = config.spike_latency if self._roll(config.spike_rate) else 0.0
        return config.latency + spike

    def fails(self) -> bool:
        """True when this request is to be answered 500 without doing anything."""
        return self._roll(self.config.failure_rate)
