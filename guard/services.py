"""The long-lived objects one API process shares between its routes."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from fastapi import Request

from guard.config import GuardConfig
from guard.engine_process import EngineProcess
from guard.handoff import Handoffs
from guard.kube import KubeClient
from guard.metrics import GuardMetrics
from guard.store import Store


@dataclass
class Services:
    """Built once in the app's lifespan and kept on `app.state.services`."""

    config: GuardConfig
    store: Store
    metrics: GuardMetrics
    """What the API observes itself (incidents' time to restore); the engine has its own."""
    engine: EngineProcess | None
    handoffs: Handoffs = field(init=False)

    def __post_init__(self) -> None:
        self.handoffs = Handoffs(self.store)

    @cached_property
    def kube(self) -> KubeClient:
        """Made at the first route that reads the cluster: the Kubernetes client is 12 MB of
        modules that the API's process otherwise never loads (the engine's has its own)."""
        return KubeClient(self.config.kubernetes)


async def get_services(request: Request) -> Services:
    """FastAPI dependency: the process's services. Async because it does no I/O: a sync
    dependency would cost every request a hop through the thread pool."""
    services: Services = request.app.state.services
    return services
