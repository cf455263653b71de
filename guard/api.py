"""HTTP API: the hand-off point for CD pipelines and the read side for people.

Submissions are idempotent on the `Idempotency-Key` header, so a pipeline may retry a POST after
a timeout without starting a second rollout.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from fastapi import FastAPI, Header, HTTPException, Query, Response, status
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from guard import __version__
from guard.config import GuardConfig
from guard.engine import Engine, utcnow
from guard.kube import KubeClient
from guard.metrics import GuardMetrics
from guard.models import ControlCommand, RolloutRequest, RolloutState, RolloutView
from guard.prometheus import PrometheusClient
from guard.store import Conflict, NotFound, Store
from strategies.registry import STRATEGIES


@dataclass
class Services:
    """What the routes need; built once per process in the lifespan."""

    config: GuardConfig
    store: Store
    engine: Engine
    metrics: GuardMetrics
    scheduler: AsyncIOScheduler


def create_app(config: GuardConfig, *, run_scheduler: bool = True) -> FastAPI:
    """The guard's ASGI app; the scheduler ticks in its event loop while it serves."""
    holder: dict[str, Services] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        store = Store(config.store.resolved_url)
        prometheus = PrometheusClient(
            config.prometheus.url, timeout_seconds=config.prometheus.timeout_seconds
        )
        metrics = GuardMetrics()
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
        if run_scheduler:
            scheduler.start()
        holder["services"] = Services(config, store, engine, metrics, scheduler)
        try:
            yield
        finally:
            if scheduler.running:
                scheduler.shutdown(wait=False)
            await prometheus.close()
            store.close()

    app = FastAPI(
        title="Deploy Guard",
        version=__version__,
        description="Guarded Kubernetes rollouts, promoted or rolled back on Prometheus evidence.",
        lifespan=lifespan,
    )

    def services() -> Services:
        return holder["services"]

    @app.post(
        "/v1/rollouts",
        status_code=status.HTTP_201_CREATED,
        responses={200: {"model": RolloutView, "description": "Replay of an Idempotency-Key"}},
    )
    def submit(
        request: RolloutRequest,
        response: Response,
        idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
    ) -> RolloutView:
        """Start a guarded rollout; the same Idempotency-Key returns the same rollout."""
        if request.strategy not in STRATEGIES:
            known = ", ".join(sorted(STRATEGIES))
            raise HTTPException(
                422,
                [
                    {
                        "loc": ["body", "strategy"],
                        "msg": f"unknown strategy; known: {known}",
                        "type": "value_error",
                    }
                ],
            )
        try:
            view, created = services().store.submit(
                request, idempotency_key=idempotency_key, now=utcnow()
            )
        except Conflict as exc:
            raise HTTPException(409, str(exc)) from exc
        if not created:
            response.status_code = status.HTTP_200_OK
        return view

    @app.get("/v1/rollouts")
    def list_rollouts(
        state: RolloutState | None = None,
        namespace: Annotated[str | None, Query(max_length=63)] = None,
        deployment: Annotated[str | None, Query(max_length=253)] = None,
        service: Annotated[str | None, Query(max_length=253)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[RolloutView]:
        """Newest first; decisions are left out here, ask for one rollout to see them."""
        return services().store.list_rollouts(
            state=state.value if state else None,
            namespace=namespace,
            deployment=deployment,
            service=service,
            limit=limit,
        )

    @app.get("/v1/rollouts/{rollout_id}")
    def get_rollout(rollout_id: str) -> RolloutView:
        try:
            return services().store.get(rollout_id)
        except NotFound as exc:
            raise HTTPException(404, f"no rollout {rollout_id}") from exc

    def control(command: ControlCommand):  # type: ignore[no-untyped-def]
        def handler(rollout_id: str) -> RolloutView:
            try:
                return services().store.command(rollout_id, command)
            except NotFound as exc:
                raise HTTPException(404, f"no rollout {rollout_id}") from exc
            except Conflict as exc:
                raise HTTPException(409, str(exc)) from exc

        handler.__doc__ = f"Ask the rollout to {command.value}; applied at the next tick."
        return handler

    for command in ControlCommand:
        app.post(f"/v1/rollouts/{{rollout_id}}/{command.value}", name=f"{command.value}_rollout")(
            control(command)
        )

    @app.get("/healthz", response_class=PlainTextResponse)
    def healthz() -> str:
        return "ok"

    @app.get("/readyz", response_class=PlainTextResponse)
    def readyz() -> Response:
        svc = holder.get("services")
        problems = []
        if svc is None:
            problems.append("starting")
        else:
            try:
                svc.store.ping()
            except Exception as exc:
                problems.append(f"store: {exc}")
            if run_scheduler and not svc.scheduler.running:
                problems.append("scheduler stopped")
        if problems:
            return PlainTextResponse("; ".join(problems), status_code=503)
        return PlainTextResponse("ok")

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(
            generate_latest(services().metrics.registry), media_type=CONTENT_TYPE_LATEST
        )

    @app.exception_handler(NotFound)
    async def not_found(_request: object, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": f"no rollout {exc}"}, status_code=404)

    return app
