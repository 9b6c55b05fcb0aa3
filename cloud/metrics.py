"""Prometheus metrics of one service process, on a registry of its own (one per app).

Counters are per replica (sum them across instances); the fleet gauges are read from the
shared database at scrape time, so every replica reports the same value (use max, not sum).
The dedupe rate is a PromQL ratio of `storeedge_ingest_events_total` by `result`
(docs/SCALING.md "Observability" has the queries).
"""

from collections.abc import Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from cloud.counters import Counters

# The `_created` twin of every counter doubles the scrape for a timestamp Prometheus ignores.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Seconds; from a loopback heartbeat (~1 ms) to a batch stuck behind a slow disk (10 s).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Events per batch, up to protocol.constants.MAX_BATCH_EVENTS.
BATCH_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000)


class Metrics:
    """Every metric the service exports; views and middleware update them in place."""

    def __init__(self, counters: Counters) -> None:
        registry = CollectorRegistry(auto_describe=True)
        self.registry = registry
        self.requests = Counter(
            "storeedge_http_requests",
            "HTTP requests answered, by route name and status code",
            ["route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "storeedge_http_request_duration_seconds",
            "Time from request start to response, by route name",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_events = Histogram(
            "storeedge_ingest_batch_events",
            "Events per POST /v1/events batch that reached storage",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.storage_seconds = Histogram(
            "storeedge_ingest_storage_seconds",
            "Time one batch spent in the storage transaction (COPY + dedupe + commit)",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.shed = Counter(
            "storeedge_shed_requests",
            "Requests refused to shed load (429 rate_limited/heartbeat_too_soon, 503 busy)",
            ["reason"],
            registry=registry,
        )
        self.inflight = Gauge(
            "storeedge_inflight_requests",
            "Agent requests being served now, by gate (events, other)",
            ["gate"],
            registry=registry,
        )
        self.db_connections = Gauge(
            "storeedge_db_connections",
            "Database connections of this process, by state (busy, idle)",
            ["state"],
            registry=registry,
        )
        self.db_waiting = Gauge(
            "storeedge_db_waiting",
            "Callers waiting for a database connection",
            registry=registry,
        )
        self.stores = Gauge("storeedge_stores", "Stores in the registry", registry=registry)
        self.agents = Gauge("storeedge_agents", "Enrolled, unrevoked agents", registry=registry)
        self.agents_online = Gauge(
            "storeedge_agents_online",
            "Agents whose latest heartbeat is recent (cloud.views.metrics.ONLINE_WINDOW)",
            registry=registry,
        )
        registry.register(_CountersCollector(counters))


class _CountersCollector(Collector):
    """Exports the in-process `Counters` (ingest outcomes, bad requests, errors) as counters."""

    def __init__(self, counters: Counters) -> None:
        self._counters = counters

    def collect(self) -> Iterator[Metric]:
        events = CounterMetricFamily(
            "storeedge_ingest_events",
            "Events by outcome; reason names why a rejected one was refused",
            labels=["result", "reason"],
        )
        for key, count in self._counters.events.items():
            if key.startswith("rejected_"):
                events.add_metric(["rejected", key.removeprefix("rejected_")], count)
            else:
                events.add_metric([key, ""], count)
        yield events
        bad = CounterMetricFamily(
            "storeedge_bad_requests",
            "Requests refused as malformed or unauthorized",
            labels=["reason"],
        )
        for key, count in self._counters.bad_requests.items():
            bad.add_metric([key], count)
        yield bad
        errors = CounterMetricFamily(
            "storeedge_errors", "Failures on the service's side, by kind", labels=["kind"]
        )
        for key, count in self._counters.errors.items():
            errors.add_metric([key], count)
        yield errors
