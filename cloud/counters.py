"""In-process counters for bad input and ingest outcomes (exported to Prometheus later)."""

from collections import Counter
from dataclasses import dataclass, field


@dataclass(slots=True)
class Counters:
    """Monotonic counts keyed by a short, bounded label (never by client-supplied text)."""

    bad_requests: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    def snapshot(self) -> dict[str, dict[str, int]]:
        """A plain-dict copy, safe to serialize."""
        return {
            "bad_requests": dict(self.bad_requests),
            "events": dict(self.events),
            "errors": dict(self.errors),
        }
