"""Delivery metrics observed when a rollout ends: only deployments count, each in its series."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import prometheus_client.metrics
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from guard.metrics import GuardMetrics, merge_expositions
from guard.models import RolloutRequest, RolloutState, RolloutTimestamps, RolloutView
from guard.store import Store
from guard.writer_lock import LockTime, WriterLock

T0 = datetime(2026, 11, 23, 12, tzinfo=UTC)
MIN = timedelta(minutes=1)


def view(state: RolloutState, reason: str, **stamps: datetime | None) -> RolloutView:
    request = RolloutRequest(
        namespace="shop",
        deployment="checkout",
        images={"checkout": "registry/checkout:1.4.2"},
        commit_time=T0 - 60 * MIN,
    )
    return RolloutView(
        id="r1",
        state=state,
        step="done",
        strategy="rolling",
        request=request,
        outcome_reason=reason,
        timestamps=RolloutTimestamps(submitted_at=T0 - MIN, **stamps),
    )


def sample(metrics: GuardMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def merged_samples(
    *processes: GuardMetrics,
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Each sample of the processes' merged exposition, by name and sorted labels."""
    merged = merge_expositions(*(generate_latest(p.registry).decode() for p in processes))
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(merged.decode())
        for s in family.samples
    }


def test_promoted_counts_with_lead_time_and_duration() -> None:
    metrics = GuardMetrics()
    metrics.observe_end(
        view(RolloutState.PROMOTED, "promoted", started_at=T0, finished_at=T0 + 10 * MIN)
    )
    assert sample(metrics, "guard_deployments_total", outcome="promoted", service="checkout") == 1
    assert sample(metrics, "guard_lead_time_seconds_sum", service="checkout") == 70 * 60
    assert (
        sample(
            metrics, "guard_rollout_duration_seconds_sum", service="checkout", outcome="promoted"
        )
        == 600
    )


def test_rollback_observes_detection_to_verified_recovery() -> None:
    metrics = GuardMetrics()
    metrics.observe_end(
        view(
            RolloutState.ROLLED_BACK,
            "analysis",
            started_at=T0,
            first_bad_sample_at=T0 + 2 * MIN,
            rollback_started_at=T0 + 3 * MIN,
            rollback_verified_at=T0 + 5 * MIN,
            finished_at=T0 + 5 * MIN,
        )
    )
    assert (
        sample(metrics, "guard_deployments_total", outcome="rolled_back", service="checkout") == 1
    )
    labels = {"service": "checkout", "source": "rollback"}
    assert sample(metrics, "guard_time_to_restore_seconds_sum", **labels) == 180
    assert sample(metrics, "guard_lead_time_seconds_count", service="checkout") is None


def test_refused_and_unchanged_rollouts_are_not_deployments() -> None:
    metrics = GuardMetrics()
    metrics.observe_end(view(RolloutState.FAILED, "error", finished_at=T0))
    metrics.observe_end(view(RolloutState.PROMOTED, "unchanged", started_at=T0, finished_at=T0))
    names = {s.name for family in metrics.registry.collect() for s in family.samples}
    assert "guard_deployments_total" not in names


def test_a_failing_store_read_never_reaches_the_engine(tmp_path: Path) -> None:
    metrics = GuardMetrics()
    store = Store(f"sqlite:///{tmp_path / 'guard.db'}")
    metrics.rollouts_ended(store, ["no-such-rollout"])  # NotFound is logged, not raised
    store.close()
    names = {s.name for family in metrics.registry.collect() for s in family.samples}
    assert "guard_deployments_total" not in names


def test_two_processes_expositions_merge_into_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prometheus_client.metrics, "time", SimpleNamespace(time=lambda: 1000.0))
    engine = GuardMetrics()
    engine.rollouts.labels(outcome="promoted").inc(2)
    engine.decision_latency.observe(0.007)
    engine.active_rollouts.set(5)
    engine.query_errors.labels(kind="timeout").inc(4)
    monkeypatch.setattr(prometheus_client.metrics, "time", SimpleNamespace(time=lambda: 2000.0))
    api = GuardMetrics()
    api.rollouts.labels(outcome="promoted").inc(3)
    api.rollouts.labels(outcome="rolled_back").inc()
    api.decision_latency.observe(0.2)
    api.decision_latency.observe(0.003)

    values = merged_samples(api, engine)
    assert values[("guard_rollouts_total", (("outcome", "promoted"),))] == 5
    assert values[("guard_rollouts_total", (("outcome", "rolled_back"),))] == 1
    assert values[("guard_rollouts_created", (("outcome", "promoted"),))] == 1000
    assert values[("guard_rollouts_created", (("outcome", "rolled_back"),))] == 2000
    assert values[("guard_decision_latency_seconds_count", ())] == 3
    assert values[("guard_decision_latency_seconds_sum", ())] == pytest.approx(0.21)
    assert values[("guard_decision_latency_seconds_bucket", (("le", "0.005"),))] == 1
    assert values[("guard_decision_latency_seconds_bucket", (("le", "0.01"),))] == 2
    assert values[("guard_decision_latency_seconds_bucket", (("le", "+Inf"),))] == 3
    assert values[("guard_decision_latency_seconds_created", ())] == 1000
    assert values[("guard_active_rollouts", ())] == 5
    assert values[("guard_prometheus_query_errors_total", (("kind", "timeout"),))] == 4


def test_writer_lock_time_is_exported_per_process_and_kept_apart_when_merged() -> None:
    api_lock, engine_lock = WriterLock(), WriterLock()
    api_lock.time = LockTime(holds=7, held_seconds=1.5, waited_seconds=0.25)
    engine_lock.time = LockTime(holds=2, held_seconds=0.75, waited_seconds=0.5)
    api, engine = GuardMetrics(), GuardMetrics()
    api.watch_writer_lock(api_lock, process="api")
    engine.watch_writer_lock(engine_lock, process="engine")
    assert sample(api, "guard_store_writer_lock_held_seconds_total", process="api") == 1.5
    api_lock.time.held_seconds = 2.0  # read at each scrape, not when watched
    assert sample(api, "guard_store_writer_lock_held_seconds_total", process="api") == 2.0

    values = merged_samples(api, engine)
    assert values[("guard_store_writer_lock_holds_total", (("process", "api"),))] == 7
    assert values[("guard_store_writer_lock_holds_total", (("process", "engine"),))] == 2
    assert values[("guard_store_writer_lock_held_seconds_total", (("process", "engine"),))] == 0.75
    assert values[("guard_store_writer_lock_wait_seconds_total", (("process", "api"),))] == 0.25
    assert values[("guard_store_writer_lock_wait_seconds_total", (("process", "engine"),))] == 0.5
    api_lock.close()
    engine_lock.close()
