"""The guard's ASGI app: routes from `guard.routes`, and the scheduler ticking in its loop."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from fastapi import FastAPI

from guard import __version__
from guard.alert_sender import AlertSender
from guard.auth import Authentication, TokenBook
from guard.body_limit import BodyLimit
from guard.config import GuardConfig
from guard.engine import Engine, utcnow
from guard.inflight import CountInFlight, InFlight
from guard.kube import KubeClient
from guard.metrics import GuardMetrics
from guard.prometheus import PrometheusClient
from guard.reload import ConfigReloader
from guard.routes import ROUTERS
from guard.services import Services
from guard.store import Store

log = logging.getLogger(__name__)


def create_app(
    config: GuardConfig, *, run_scheduler: bool = True, config_path: Path | None = None
) -> FastAPI:
    """One guard process: API plus scheduler, sharing one store and one set of clients.

    Tokens are read here, at start, so a bad `auth.tokens_file` stops the process at once.
    With `config_path`, the file is reloaded when it changes or on SIGHUP (see guard.reload).
    """
    tokens = TokenBook.from_config(config.auth)
    in_flight = InFlight()
    if not len(tokens):
        log.warning(
            "auth: no API tokens configured; every API call will answer 401. "
            "Create one with `guard token create --scope read --name me`"
        )

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
        engine = Engine(
            config, store, KubeClient(config.kubernetes), prometheus, metrics, in_flight=in_flight
        )
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
        services = Services(config, store, engine, metrics, scheduler)
        if config_path is not None:
            _watch_config(app, config_path, config, services, sender, scheduler)
        if run_scheduler:
            scheduler.start()
        app.state.services = services
        try:
            yield
        finally:
            if scheduler.running:
                scheduler.shutdown(wait=False)
            if config_path is not None:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
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
    app.state.tokens = tokens
    for router in ROUTERS:
        app.include_router(router)
    app.add_middleware(BodyLimit, max_bytes=config.server.max_body_bytes)
    app.add_middleware(Authentication)
    app.add_middleware(CountInFlight, in_flight=in_flight)  # added last: runs first
    return app


def _watch_config(
    app: FastAPI,
    path: Path,
    config: GuardConfig,
    services: Services,
    sender: AlertSender,
    scheduler: AsyncIOScheduler,
) -> None:
    """Poll the config file every tick and reload on SIGHUP; a new config reaches the engine,
    the alert sender, the routes and the API tokens together."""

    async def apply(new: GuardConfig) -> None:
        tokens = TokenBook.from_config(new.auth)  # checked by the reloader; rotates tokens
        await services.engine.reconfigure(new)
        sender.reconfigure(new.alerts)
        services.config = new
        app.state.tokens = tokens

    reloader = ConfigReloader(path, config, apply=apply, store=services.store, clock=utcnow)
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reloader.request)
    scheduler.add_job(
        reloader.run_once,
        "interval",
        seconds=config.scheduler.tick_seconds,
        max_instances=1,
        coalesce=True,
    )
    log.info("watching %s for config changes (and SIGHUP)", path)
