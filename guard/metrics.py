"""The guard's own Prometheus metrics, on a registry per process so tests can build many apps."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class GuardMetrics:
    """Outcomes, decision latency and the health of the guard's own inputs."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.rollouts = Counter(
            "guard_rollouts_total",
            "Rollouts that ended, by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.decision_latency = Histogram(
            "guard_decision_latency_seconds",
            "From the start of an analysis to its decision being stored.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.query_errors = Counter(
            "guard_prometheus_query_errors_total",
            "Prometheus queries that gave no usable answer, by kind.",
            ["kind"],
            registry=self.registry,
        )
        self.kubernetes_errors = Counter(
            "guard_kubernetes_errors_total",
            "Kubernetes API calls that failed after retries.",
            registry=self.registry,
        )
        self.tick_duration = Histogram(
            "guard_tick_duration_seconds",
            "Duration of one scheduler tick over all active rollouts.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.active_rollouts = Gauge(
            "guard_active_rollouts", "Rollouts not yet ended.", registry=self.registry
        )
        self.alert_deliveries = Counter(
            "guard_alert_deliveries_total",
            "Alert delivery attempts, by receiver and outcome (sent, retry, failed).",
            ["receiver", "outcome"],
            registry=self.registry,
        )
