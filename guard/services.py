"""The long-lived objects one guard process shares between its routes and its scheduler."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from fastapi import Request
from starlette.concurrency import run_in_threadpool

from guard.config import GuardConfig
from guard.engine import Engine
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


async def get_services(request: Request) -> Services:
    """FastAPI dependency: the process's services. Async because it does no I/O: a sync
    dependency would cost every request a hop through the thread pool."""
    services: Services = request.app.state.services
    return services


P = ParamSpec("P")
T = TypeVar("T")


async def on_store(store: Store, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a short store call (one rollout's read or hand-off) on the event loop when it
    cannot wait (`Store.writer_if_free`), else in the thread pool.

    Under load the hop cost more than the call: 16 pool threads handing the GIL back and forth
    doubled a submission's CPU and added tail latency. A call that might wait (the writer is
    busy, or the database is across a network) still goes to a thread, so the loop never
    blocks on it.
    """
    with store.writer_if_free() as free:
        if free:
            return call(*args, **kwargs)
    return await run_in_threadpool(call, *args, **kwargs)
