"""The guard's own Prometheus metrics, on a registry per process so tests can build many apps.

Delivery metrics (deployments by outcome, lead time, rollout duration, time to restore) are
observed where a rollout ends, so Grafana can chart DORA figures from Prometheus alone; the
`/v1/dora` API computes the exact figures from the store.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from guard.dora import DEPLOYMENT_OUTCOMES, outcome_of
from guard.models import RolloutView
from guard.store import Store
from guard.writer_lock import WriterLock

log = logging.getLogger(__name__)

# From a minute to a month: lead times span commit-to-deploy pipelines of very different speeds.
LONG_BUCKETS = (
    60,
    300,
    900,
    1800,
    3600,
    3 * 3600,
    6 * 3600,
    12 * 3600,
    86400,
    2 * 86400,
    7 * 86400,
    30 * 86400,
)
# From seconds to a day: a guarded rollout or an automatic recovery takes minutes.
SHORT_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 2 * 3600, 6 * 3600, 86400)


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
        self.queries_last_tick = Gauge(
            "guard_prometheus_queries_last_tick",
            "PromQL queries the last analysing tick sent, for all its rollouts together.",
            registry=self.registry,
        )
        self.kubernetes_calls_last_tick = Gauge(
            "guard_kubernetes_calls_last_tick",
            "Kubernetes API calls the last tick made for all its rollouts together: one listing "
            "per namespace, plus the changes it decided.",
            registry=self.registry,
        )
        self.analysed_last_tick = Gauge(
            "guard_analysed_rollouts_last_tick",
            "Rollouts the last analysing tick measured.",
            registry=self.registry,
        )
        self.active_rollouts = Gauge(
            "guard_active_rollouts",
            "Rollouts not yet ended that this replica drives (all of them with one replica).",
            registry=self.registry,
        )
        self.deployments = Counter(
            "guard_deployments_total",
            "Deployments (rollouts that changed production) that ended, by outcome and service.",
            ["outcome", "service"],
            registry=self.registry,
        )
        self.lead_time = Histogram(
            "guard_lead_time_seconds",
            "Lead time for changes: commit time to promotion.",
            ["service"],
            buckets=LONG_BUCKETS,
            registry=self.registry,
        )
        self.rollout_duration = Histogram(
            "guard_rollout_duration_seconds",
            "From the start of a deployment to its end, by outcome.",
            ["service", "outcome"],
            buckets=SHORT_BUCKETS,
            registry=self.registry,
        )
        self.time_to_restore = Histogram(
            "guard_time_to_restore_seconds",
            "Failed deployment recovery time: detection to verified recovery.",
            ["service", "source"],
            buckets=SHORT_BUCKETS,
            registry=self.registry,
        )

        self.alert_deliveries = Counter(
            "guard_alert_deliveries_total",
            "Alert delivery attempts, by receiver and outcome (sent, retry, failed).",
            ["receiver", "outcome"],
            registry=self.registry,
        )

    def watch_writer_lock(self, lock: WriterLock, process: str) -> None:
        """Export how long `process`'s writers held the store's writer lock and waited for it.

        The guard's processes write through one lock, so the sum of their held time's rate is how
        busy the store's one writer is: near 1, hand-offs queue behind ticks and the reverse.
        """
        self.registry.register(_WriterLockTime(lock, process))

    def rollouts_ended(self, store: Store, rollout_ids: Iterable[str]) -> None:
        """Observe ended rollouts, all in one call so a tick that ends many pays one thread
        hop. Never raises: the engine calls this between storing terminal transitions and
        alerting on them, and a metric must not cost an alert."""
        for rollout_id in rollout_ids:
            try:
                self.observe_end(store.get(rollout_id))
            except Exception:
                log.exception("rollout %s: delivery metrics not recorded", rollout_id)

    def observe_end(self, view: RolloutView) -> None:
        """Refused and unchanged rollouts are not deployments and are not counted."""
        stamps = view.timestamps
        outcome = outcome_of(view.state.value, view.outcome_reason, stamps.started_at)
        if outcome not in DEPLOYMENT_OUTCOMES:
            return
        service = view.request.service_name
        self.deployments.labels(outcome=outcome.value, service=service).inc()
        if stamps.started_at and stamps.finished_at:
            seconds = (stamps.finished_at - stamps.started_at).total_seconds()
            self.rollout_duration.labels(service=service, outcome=outcome.value).observe(seconds)
        commit = view.request.commit_time
        if outcome.value == "promoted" and commit and stamps.finished_at:
            self.lead_time.labels(service=service).observe(
                (stamps.finished_at - commit).total_seconds()
            )
        detected = stamps.first_bad_sample_at or stamps.rollback_started_at
        if outcome.value == "rolled_back" and detected and stamps.rollback_verified_at:
            self.time_to_restore.labels(service=service, source="rollback").observe(
                (stamps.rollback_verified_at - detected).total_seconds()
            )


def merge_expositions(*texts: str) -> bytes:
    """One exposition out of several processes' (the engine's and the API's).

    Each process builds every family of `GuardMetrics` and observes its own part, so samples of
    the same name and labels are summed: counters and histograms add up, and a gauge that one
    process sets gets its value (the other's stays 0). `_created` (when a series began) keeps
    the earliest.
    """
    families: dict[str, Metric] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            merged = families.get(family.name)
            if merged is None:
                families[family.name] = family
                continue
            index = {
                (s.name, tuple(sorted(s.labels.items()))): i for i, s in enumerate(merged.samples)
            }
            for sample in family.samples:
                at = index.get((sample.name, tuple(sorted(sample.labels.items()))))
                if at is None:
                    merged.samples.append(sample)
                    continue
                kept = merged.samples[at]
                combine = min if sample.name.endswith("_created") else sum
                merged.samples[at] = kept._replace(value=combine((kept.value, sample.value)))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(list(families.values())))
    return generate_latest(registry)


class _WriterLockTime:
    def __init__(self, lock: WriterLock, process: str) -> None:
        self._lock = lock
        self._process = process

    def collect(self) -> list[Metric]:
        time = self._lock.time
        families = [
            ("holds", "Times a writer took the store's writer lock.", time.holds),
            ("held_seconds", "Time writers held the store's writer lock.", time.held_seconds),
            (
                "wait_seconds",
                "Time writers waited for the store's writer lock.",
                time.waited_seconds,
            ),
        ]
        collected: list[Metric] = []
        for name, documentation, value in families:
            family = CounterMetricFamily(
                f"guard_store_writer_lock_{name}", documentation, labels=["process"]
            )
            family.add_metric([self._process], value)
            collected.append(family)
        return collected


class _Families:
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families
