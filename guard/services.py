"""The long-lived objects one guard process shares between its routes and its scheduler."""

from __future__ import annotations

from dataclasses import dataclass, field

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from fastapi import Request

from guard.config import GuardConfig
from guard.engine import Engine
from guard.handoff import Handoffs
from guard.metrics import GuardMetrics
from guard.store import Store


@dataclass
class Services:
    """Built once in the app's lifespan and kept on `app.state.services`."""

    config: GuardConfig
    store: Store
    engine: Engine
    metrics: GuardMetrics
    scheduler: AsyncIOScheduler
    handoffs: Handoffs = field(init=False)

    def __post_init__(self) -> None:
        self.handoffs = Handoffs(self.store)


async def get_services(request: Request) -> Services:
    """FastAPI dependency: the process's services. Async because it does no I/O: a sync
    dependency would cost every request a hop through the thread pool."""
    services: Services = request.app.state.services
    return services
