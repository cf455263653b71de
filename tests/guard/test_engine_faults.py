"""A rollout whose Kubernetes calls keep failing ends, with an alert, after a bounded time."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from guard.config import GuardConfig, parse_config
from guard.engine import Engine
from guard.kube import KubeClient, KubeError
from guard.metrics import GuardMetrics
from guard.models import RolloutRequest, RolloutState
from guard.prometheus import PrometheusClient
from guard.store import Store

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


class DownApi:
    """Every read fails as it would with the API server unreachable."""

    calls = 0

    def read_namespace(self, namespace: str, **wanted: bool) -> Any:
        self.calls += 1
        raise KubeError("ConnectionRefusedError: [Errno 111]", retryable=True)


def test_a_rollout_gives_up_once_kubernetes_kept_failing_for_the_configured_time(
    tmp_path: Path,
) -> None:
    config: GuardConfig = parse_config({"kubernetes": {"give_up_after_seconds": 60}})
    store = Store(f"sqlite:///{tmp_path / 'guard.db'}")
    now = [T0]
    kube: KubeClient = DownApi()  # type: ignore[assignment]
    engine = Engine(
        config, store, kube, PrometheusClient("http://127.0.0.1:9"), GuardMetrics(),
        clock=lambda: now[0],
    )  # fmt: skip
    request = RolloutRequest(namespace="shop", deployment="web", images={"web": "web:2"})
    view, _ = store.submit(request, idempotency_key=None, now=T0)

    async def tick_at(seconds: float) -> RolloutState:
        now[0] = T0 + timedelta(seconds=seconds)
        await engine.tick()
        return store.get(view.id).state

    assert asyncio.run(tick_at(0)) is RolloutState.PENDING
    assert asyncio.run(tick_at(59)) is RolloutState.PENDING
    assert asyncio.run(tick_at(61)) is RolloutState.FAILED

    failed = store.get(view.id)
    assert failed.outcome_reason == "kubernetes_error"
    assert "kept failing for 61s" in failed.message
    assert "kubernetes.give_up_after_seconds" in failed.message
    assert [a.rollout_id for a in store.outbox.list()] == [view.id]
