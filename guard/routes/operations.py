"""Liveness, readiness and the guard's own metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from guard.engine_process import METRICS_SECONDS
from guard.metrics import merge_expositions
from guard.services import Services

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_class=PlainTextResponse)
def healthz() -> str:
    return "ok"


@router.get("/readyz", response_class=PlainTextResponse)
def readyz(request: Request) -> Response:
    """Ready once the store answers and the engine runs (see `EngineProcess.problem`)."""
    services: Services | None = getattr(request.app.state, "services", None)
    problems = []
    if services is None:
        problems.append("starting")
    else:
        try:
            services.store.ping()
        except Exception as exc:
            problems.append(f"store: {exc}")
        if services.engine is not None and (problem := services.engine.problem()):
            problems.append(problem)
    if problems:
        return PlainTextResponse("; ".join(problems), status_code=503)
    return PlainTextResponse("ok")


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """The engine's metrics and the API's own, as one exposition."""
    services: Services = request.app.state.services
    own = generate_latest(services.metrics.registry).decode()
    if services.engine is None:
        return Response(own, media_type=CONTENT_TYPE_LATEST)
    try:
        engine = await services.engine.metrics()
    except TimeoutError:
        message = f"the engine did not answer within {METRICS_SECONDS:g} s"
        return PlainTextResponse(message, status_code=503)
    except ConnectionError as exc:
        return PlainTextResponse(str(exc), status_code=503)
    return Response(merge_expositions(engine, own), media_type=CONTENT_TYPE_LATEST)
