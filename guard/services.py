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


async def read_store(store: Store, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run one rollout's read on the event loop when the store is a local file (it cannot wait
    there), else in the thread pool (a network database can stall).

    Under load a hop to the pool cost more than the read: 16 pool threads handing the GIL back
    and forth doubled the CPU of a request and added to its tail latency.
    """
    if not store.local_file:
        return await run_in_threadpool(call, *args, **kwargs)
    return call(*args, **kwargs)


async def write_store(store: Store, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a hand-off's write on the event loop, once the store's writer lock is free (awaited,
    never blocked on), when the store is a local file; else in the thread pool."""
    if not store.local_file:
        return await run_in_threadpool(call, *args, **kwargs)
    async with store.writer.held_on_loop():
        return call(*args, **kwargs)
