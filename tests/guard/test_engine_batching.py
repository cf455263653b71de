"""A burst of new rollouts is gated in a few transactions (not one each, nor one holding the
store's writer for a whole tick), and one bad write fails only its own rollout."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from guard.config import GuardConfig, parse_config
from guard.engine import STORE_BATCH, Engine
from guard.kube import KubeClient, NamespaceSnapshot
from guard.metrics import GuardMetrics
from guard.models import RolloutRequest, RolloutState
from guard.prometheus import PrometheusClient
from guard.store import Applied, Store

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


class EmptyNamespace:
    """A namespace without the Deployments the rollouts name: each pre-flight refuses."""

    calls = 0

    def read_namespace(self, namespace: str, **wanted: bool) -> NamespaceSnapshot:
        self.calls += 1
        return NamespaceSnapshot(namespace)


class CountingStore(Store):
    """Counts the write transactions of ticks; one rollout's write always fails."""

    def __init__(self, url: str, failing: set[str]) -> None:
        super().__init__(url)
        self.transactions: list[int] = []
        self.failing = failing

    def apply_many(self, applied: Sequence[Applied], **kwargs: Any) -> None:
        self.transactions.append(len(applied))
        if self.failing & {a.rollout_id for a in applied}:
            raise RuntimeError("disk full")
        super().apply_many(applied, **kwargs)


def _engine(store: Store) -> Engine:
    config: GuardConfig = parse_config({})
    kube: KubeClient = EmptyNamespace()  # type: ignore[assignment]
    prometheus = PrometheusClient("http://127.0.0.1:9")
    return Engine(config, store, kube, prometheus, GuardMetrics(), clock=lambda: T0)


def _submit(store: Store, count: int) -> list[str]:
    ids = []
    for index in range(count):
        request = RolloutRequest(namespace="shop", deployment=f"web-{index}", images={"web": "w:2"})
        ids.append(store.submit(request, idempotency_key=None, now=T0)[0].id)
    return ids


def test_the_gates_of_a_burst_of_new_rollouts_share_transactions_of_a_bounded_size(
    tmp_path: Path,
) -> None:
    store = CountingStore(f"sqlite:///{tmp_path / 'guard.db'}", failing=set())
    ids = _submit(store, STORE_BATCH * 2 + STORE_BATCH // 2)

    asyncio.run(_engine(store).tick())

    assert store.transactions == [STORE_BATCH, STORE_BATCH, STORE_BATCH // 2]
    assert {store.get(i).state for i in ids} == {RolloutState.REFUSED}


def test_a_failing_write_in_a_shared_transaction_fails_only_its_own_rollout(
    tmp_path: Path,
) -> None:
    store = CountingStore(f"sqlite:///{tmp_path / 'guard.db'}", failing=set())
    ids = _submit(store, 5)
    store.failing = {ids[2]}

    asyncio.run(_engine(store).tick())

    states = [store.get(i).state for i in ids]
    assert (
        states == [RolloutState.REFUSED] * 2 + [RolloutState.PENDING] + [RolloutState.REFUSED] * 2
    )
    assert store.transactions[0] == 5  # tried together first, then one by one
