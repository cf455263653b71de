"""The guard's ASGI app: routes from `guard.routes`, beside the engine's process."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import FastAPI

from guard import __version__
from guard.auth import Authentication
from guard.body_limit import BodyLimit
from guard.config import GuardConfig
from guard.engine_process import EngineProcess
from guard.metrics import GuardMetrics
from guard.routes import ROUTERS
from guard.services import Services
from guard.store import Store
from guard.tokens import TokenBook

log = logging.getLogger(__name__)


def create_app(config: GuardConfig, *, engine: EngineProcess | None = None) -> FastAPI:
    """The guard's API, in the process `guard serve` runs it in; `engine` is the engine it
    forked (see guard.engine_process). Without one (the routes' in-process tests) nothing rolls
    out and `/metrics` holds the API's own metrics only.

    Tokens are read here, at start, so a bad `auth.tokens_file` stops the process at once.
    """
    tokens = TokenBook.from_config(config.auth)
    if not len(tokens):
        log.warning(
            "auth: no API tokens configured; every API call will answer 401. "
            "Create one with `guard token create --scope read --name me`"
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A PostgreSQL store's calls run in threads; the default pool (cores + 4) would make
        # requests wait in line for one.
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=32, thread_name_prefix="guard")
        )
        store = Store(config.store.resolved_url)
        metrics = GuardMetrics()
        metrics.watch_writer_lock(store.writer, process="api")
        services = Services(config, store, metrics, engine)
        if engine is not None:
            loop = asyncio.get_running_loop()
            engine.attach(
                on_config=lambda new: _apply(app, services, new),
                on_exit=lambda: os.kill(os.getpid(), signal.SIGTERM),  # uvicorn stops
            )
            loop.add_signal_handler(signal.SIGHUP, engine.reload)
        app.state.services = services
        try:
            yield
        finally:
            if engine is not None:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
                engine.detach()
            store.close()

    app = FastAPI(
        title="Deploy Guard",
        version=__version__,
        description="Guarded Kubernetes rollouts, promoted or rolled back on Prometheus evidence.",
        lifespan=lifespan,
    )
    app.state.tokens = tokens
    for router in ROUTERS:
        app.include_router(router)
    app.add_middleware(BodyLimit, max_bytes=config.server.max_body_bytes)
    app.add_middleware(Authentication)
    return app


def _apply(app: FastAPI, services: Services, new: GuardConfig) -> None:
    """A config the engine reloaded reaches the routes and the API tokens."""
    try:
        tokens = TokenBook.from_config(new.auth)
    except Exception as exc:  # the file changed again since the engine read it
        log.error("config reload: API tokens not reloaded, the old ones stay: %s", exc)
        return
    services.config = new
    app.state.tokens = tokens
