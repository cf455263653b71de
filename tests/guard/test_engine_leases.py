"""The engine acts only on rollouts it still holds: a lost lease means no Kubernetes call."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from guard.config import GuardConfig
from guard.engine import Engine
from guard.metrics import GuardMetrics
from guard.models import RolloutRequest, RolloutState
from guard.prometheus import PrometheusClient
from guard.store import Leases, Store
from strategies.base import Action, Transition

T0 = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
IMAGE = "registry/checkout:1.4.2"
SET_IMAGES = Action(
    "set_images", {"namespace": "shop", "name": "checkout", "images": {"checkout": IMAGE}}
)


class RecordingKube:
    """Stands in for KubeClient; every call is recorded, none may happen here."""

    def __init__(self) -> None:
        self.called: list[str] = []
        self.calls = 0  # KubeClient's request counter, read by the tick

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> None:
            self.called.append(name)

        return call


class StolenAfterClaim(Store):
    """Another replica takes every lease right after this one claimed (as after a long stall)."""

    def lease(self, replica_id: str, lease_seconds: float, now: datetime) -> Leases:
        mine = super().lease(replica_id, lease_seconds, now)
        super().lease("thief", lease_seconds, now + timedelta(seconds=lease_seconds + 1))
        return mine


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = StolenAfterClaim(db_url)
    yield s
    s.close()


def test_a_lost_lease_runs_no_pending_action_and_writes_nothing(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    request = RolloutRequest(namespace="shop", deployment="checkout", images={"checkout": IMAGE})
    view, _ = store.submit(request, idempotency_key=None, now=T0)
    updating = Transition(RolloutState.PROGRESSING, "updating", {}, actions=[SET_IMAGES])
    store.apply(view.id, updating, analysed_at=None, now=T0)
    kube = RecordingKube()
    prometheus = PrometheusClient("http://127.0.0.1:9")
    engine = Engine(
        GuardConfig(), store, kube, prometheus, GuardMetrics(), clock=lambda: T0,  # type: ignore[arg-type]
        replica_id="stalled",
    )  # fmt: skip

    asyncio.run(engine.tick())

    assert kube.called == []
    assert "another replica took it over" in caplog.text
    [active] = store.active()
    assert active.pending_actions == [SET_IMAGES]
    assert store.get(view.id).details["lease"]["replica"] == "thief"
