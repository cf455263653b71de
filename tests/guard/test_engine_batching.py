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
from guard.inflight import MAX_WAIT, TICK_BUDGET, InFlight
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


class RecordingGaps(InFlight):
    """Records how many rollouts' work had started by the end of each gap left for requests."""

    def __init__(self) -> None:
        super().__init__()
        self.started_at_gaps: list[int] = []
        self.begun = 0

    async def gap(self, max_wait: float = MAX_WAIT) -> float:
        waited = await super().gap(max_wait)
        self.started_at_gaps.append(self.begun)
        return waited


def test_a_tick_starts_its_rollouts_work_in_waves_with_a_gap_for_requests_between(
    tmp_path: Path,
) -> None:
    engine = _engine(Store(f"sqlite:///{tmp_path / 'guard.db'}"))
    gaps = RecordingGaps()
    engine.in_flight = gaps

    async def work(index: int) -> int:
        gaps.begun += 1
        await asyncio.sleep(0)
        return index

    count = STORE_BATCH * 2 + 1
    results = asyncio.run(engine._gather_in_waves(work(i) for i in range(count)))

    assert results == list(range(count))
    assert gaps.started_at_gaps == [STORE_BATCH, 2 * STORE_BATCH]


class StuckRequest(InFlight):
    """A request that never finishes (a client sending its body slowly): each gap waits as long
    as it is allowed to, and records how long that was."""

    def __init__(self) -> None:
        super().__init__()
        self.started()
        self.allowed: list[float] = []

    async def gap(self, max_wait: float = MAX_WAIT) -> float:
        self.allowed.append(max_wait)
        await asyncio.sleep(0)
        return max_wait


def test_a_tick_waits_for_gaps_within_its_budget_only(tmp_path: Path) -> None:
    engine = _engine(Store(f"sqlite:///{tmp_path / 'guard.db'}"))
    stuck = StuckRequest()
    engine.in_flight = stuck

    async def nothing() -> None:
        return None

    async def tick_work() -> None:
        engine._gap_budget = TICK_BUDGET  # as a tick starts
        await engine._gather_in_waves(nothing() for _ in range(STORE_BATCH * 60))

    asyncio.run(tick_work())

    assert len(stuck.allowed) == 59
    assert max(stuck.allowed) == MAX_WAIT
    assert sum(stuck.allowed) <= TICK_BUDGET + 1e-9
    assert stuck.allowed[-1] == 0  # the budget spent, later batches only take a turn
