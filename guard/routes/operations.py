"""Liveness, readiness and the guard's own metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_class=PlainTextResponse)
def healthz() -> str:
    return "ok"


@router.get("/readyz", response_class=PlainTextResponse)
def readyz(request: Request) -> Response:
    """Ready once the store answers and the scheduler runs."""
    services = getattr(request.app.state, "services", None)
    problems = []
    if services is None:
        problems.append("starting")
    else:
        try:
            services.store.ping()
        except Exception as exc:
            problems.append(f"store: {exc}")
        if request.app.state.run_scheduler and not services.scheduler.running:
            problems.append("scheduler stopped")
    if problems:
        return PlainTextResponse("; ".join(problems), status_code=503)
    return PlainTextResponse("ok")


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    registry = request.app.state.services.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
