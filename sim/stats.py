"""What a fleet run counts and times; plain numbers, merged into one summary at the end."""

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# Latency samples kept per kind; past this a uniform reservoir keeps the percentiles honest
# without letting a long run grow memory without bound.
MAX_SAMPLES = 500_000


@dataclass
class Samples:
    """Latencies in seconds, reservoir-sampled past MAX_SAMPLES (Vitter's algorithm R)."""

    values: list[float] = field(default_factory=list)
    seen: int = 0

    def add(self, value: float, rng_value: float) -> None:
        """Record one latency; `rng_value` is a uniform [0, 1) draw from the caller's RNG."""
        self.seen += 1
        if len(self.values) < MAX_SAMPLES:
            self.values.append(value)
            return
        slot = int(rng_value * self.seen)
        if slot < MAX_SAMPLES:
            self.values[slot] = value

    def percentiles(self) -> dict[str, float]:
        """p50/p90/p99/p99.9/max in milliseconds (empty when nothing was recorded)."""
        ordered = sorted(self.values)
        if not ordered:
            return {}

        def at(q: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

        return {
            "p50_ms": at(0.50),
            "p90_ms": at(0.90),
            "p99_ms": at(0.99),
            "p99_9_ms": at(0.999),
            "max_ms": round(ordered[-1] * 1000, 2),
        }


@dataclass
class FleetStats:
    """Counters and latency samples of the whole fleet (one event loop, no locks needed)."""

    started: float = field(default_factory=time.monotonic)
    events: Counter[str] = field(default_factory=Counter)  # captured/accepted/duplicate/…
    requests: Counter[str] = field(default_factory=Counter)  # "events 200", "heartbeat 429"…
    retries: Counter[str] = field(default_factory=Counter)  # why a request was sent again
    enrolled: int = 0
    enroll_failed: int = 0
    heartbeat: Samples = field(default_factory=Samples)
    batch: Samples = field(default_factory=Samples)
    delivery: Samples = field(default_factory=Samples)  # capture → accepted/duplicate
    loop_lag: Samples = field(default_factory=Samples)  # the simulator's own scheduling delay

    def summary(self, elapsed: float) -> dict[str, Any]:
        """Everything as plain data, for the printed table and `--json`."""
        delivered = self.events["accepted"] + self.events["duplicate"]
        return {
            "elapsed_s": round(elapsed, 1),
            "agents": self.enrolled,
            "enroll_failed": self.enroll_failed,
            "events": dict(self.events),
            "events_delivered_per_s": round(delivered / elapsed, 1) if elapsed else 0.0,
            "requests": dict(self.requests),
            "retries": dict(self.retries),
            "latency": {
                "heartbeat": self.heartbeat.percentiles(),
                "batch": self.batch.percentiles(),
                "delivery": self.delivery.percentiles(),
                "sim_loop_lag": self.loop_lag.percentiles(),
            },
        }
