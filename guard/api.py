"""The guard's ASGI app: routes from `guard.routes`, and the scheduler ticking in its loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from fastapi import FastAPI

from guard import __version__
from guard.alert_sender import AlertSender
from guard.config import GuardConfig
from guard.engine import Engine, utcnow
from guard.kube import KubeClient
from guard.metrics import GuardMetrics
from guard.prometheus import PrometheusClient
from guard.routes import ROUTERS
from guard.services import Services
from guard.store import Store


def create_app(config: GuardConfig, *, run_scheduler: bool = True) -> FastAPI:
    """One guard process: API plus scheduler, sharing one store and one set of clients."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Kubernetes calls and SQLite commits run in threads; the default pool (cores + 4) would
        # make a tick over many rollouts wait in line.
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=32, thread_name_prefix="guard")
        )
        store = Store(config.store.resolved_url)
        metrics = GuardMetrics()
        prometheus = PrometheusClient(
            config.prometheus.url,
            timeout_seconds=config.prometheus.timeout_seconds,
            on_error=lambda status: metrics.query_errors.labels(kind=status.value).inc(),
        )
        engine = Engine(config, store, KubeClient(config.kubernetes), prometheus, metrics)
        scheduler = AsyncIOScheduler()
        scheduler.add_job(
            engine.tick,
            "interval",
            seconds=config.scheduler.tick_seconds,
            max_instances=1,
            coalesce=True,
            next_run_time=utcnow(),
        )
        sender = AlertSender(store.outbox, config.alerts, clock=utcnow, metrics=metrics)
        scheduler.add_job(  # its own job: a slow receiver never delays a tick
            sender.run_once,
            "interval",
            seconds=config.alerts.delivery.poll_seconds,
            max_instances=1,
            coalesce=True,
            next_run_time=utcnow(),
        )
        if run_scheduler:
            scheduler.start()
        app.state.services = Services(config, store, engine, metrics, scheduler)
        try:
            yield
        finally:
            if scheduler.running:
                scheduler.shutdown(wait=False)
            await asyncio.to_thread(store.release, engine.replica_id)  # others take over now
            await sender.close()
            await prometheus.close()
            store.close()

    app = FastAPI(
        title="Deploy Guard",
        version=__version__,
        description="Guarded Kubernetes rollouts, promoted or rolled back on Prometheus evidence.",
        lifespan=lifespan,
    )
    app.state.run_scheduler = run_scheduler
    for router in ROUTERS:
        app.include_router(router)
    return app
