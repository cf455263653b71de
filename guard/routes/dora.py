"""Delivery performance: DORA metrics, incidents after promotion, rollout reports, dashboard.

The edge of the DORA feature: these handlers read the store, hand plain records to the pure
`guard.dora`, `guard.report` and `guard.dashboard`, and pick the representation.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response, status
from fastapi.responses import HTMLResponse, PlainTextResponse

from guard import dashboard, dora, report
from guard.auth import Operator, Reader
from guard.clock import utcnow
from guard.errors import ERRORS
from guard.records import (
    Incident,
    IncidentRequest,
    TooEarly,
    alerts_sent,
    delivery_records,
    incidents_of,
    record_incident,
    team_of,
)
from guard.services import Services, get_services
from guard.store import Conflict, NotFound

router = APIRouter(tags=["delivery performance"], responses=ERRORS)
ServicesDep = Annotated[Services, Depends(get_services)]
RolloutId = Annotated[str, Path(max_length=36)]
WindowQuery = Annotated[
    str, Query(max_length=8, description="Length of the window ending now: 12h, 30d, 4w")
]
NameQuery = Annotated[str | None, Query(max_length=253)]


def _window(text: str) -> dora.Window:
    try:
        return dora.parse_window(text, now=utcnow())
    except ValueError as exc:
        detail = [{"loc": ["query", "window"], "msg": str(exc), "type": "value_error"}]
        raise HTTPException(422, detail) from exc


def compute(
    services: Services, window: dora.Window, service: str | None, team: str | None
) -> dora.DoraReport:
    """Read the window's records (plus a month before it, for incidents still open at its
    start) and compute the report."""
    deployments, incidents = delivery_records(
        services.store, services.config, since=window.start - timedelta(days=30)
    )
    frame = dora.build_frame(deployments, incidents)
    return dora.report(frame, window, service=service, team=team)


@router.get(
    "/v1/dora",
    responses={200: {"content": {"text/csv": {}}, "description": "JSON, or CSV with format=csv"}},
)
def get_dora(
    services: ServicesDep,
    _principal: Reader,
    service: NameQuery = None,
    team: NameQuery = None,
    window: WindowQuery = "30d",
    format: Literal["json", "csv"] = "json",
) -> Response:
    """DORA metrics with levels from the DORA 2024 report, and release KPIs with pass/warn."""
    result = compute(services, _window(window), service, team)
    if format == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=dora.CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(dora.csv_rows(result))
        return PlainTextResponse(buffer.getvalue(), media_type="text/csv")
    return Response(result.model_dump_json(), media_type="application/json")


@router.post(
    "/v1/rollouts/{rollout_id}/incident",
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": Incident, "description": "An open incident was resolved"}},
)
def post_incident(
    rollout_id: RolloutId,
    body: IncidentRequest,
    response: Response,
    services: ServicesDep,
    principal: Operator,
) -> Incident:
    """Record a failure of a promoted change found after its promotion (one per rollout)."""
    try:
        change = record_incident(services.store, rollout_id, body, actor=principal.name)
    except NotFound as exc:
        raise HTTPException(404, f"no rollout {rollout_id}") from exc
    except TooEarly as exc:
        detail = [{"loc": ["body", "opened_at"], "msg": str(exc), "type": "value_error"}]
        raise HTTPException(422, detail) from exc
    except Conflict as exc:
        raise HTTPException(409, str(exc)) from exc
    incident = change.incident
    if not change.created:
        response.status_code = status.HTTP_200_OK
    if change.resolved_now and incident.resolved_at is not None:
        seconds = (incident.resolved_at - incident.opened_at).total_seconds()
        services.metrics.time_to_restore.labels(
            service=incident.service, source="incident"
        ).observe(seconds)
    return incident


@router.get(
    "/v1/rollouts/{rollout_id}/report",
    responses={200: {"content": {"text/markdown": {}, "text/html": {}}}},
)
def get_report(
    rollout_id: RolloutId,
    services: ServicesDep,
    _principal: Reader,
    format: Literal["markdown", "html", "json"] = "markdown",
) -> Response:
    """Execution report: plan vs actual, metrics before/during/after, decisions, rollback."""
    try:
        view = services.store.get(rollout_id)
    except NotFound as exc:
        raise HTTPException(404, f"no rollout {rollout_id}") from exc
    service = view.request.service_name
    built = report.build(
        view,
        team=team_of(services.config, service, view.request.labels),
        config=services.config.analysis_for(service),
        tick_seconds=services.config.scheduler.tick_seconds,
        incidents=incidents_of(services.store, rollout_id),
        alerts=alerts_sent(services.store, rollout_id),
    )
    if format == "html":
        return HTMLResponse(report.to_html(built))
    if format == "json":
        return Response(built.model_dump_json(), media_type="application/json")
    return PlainTextResponse(report.markdown(built), media_type="text/markdown")


@router.get("/dashboard", response_class=HTMLResponse)
def get_dashboard(
    services: ServicesDep,
    _principal: Reader,
    service: NameQuery = None,
    team: NameQuery = None,
    window: WindowQuery = "30d",
) -> HTMLResponse:
    """DORA tiles with levels, weekly trends and the recent rollouts, each linked to its report."""
    result = compute(services, _window(window), service, team)
    views = services.store.list_rollouts(service=service, limit=100)
    recent = []
    for view in views:
        name = view.request.service_name
        rollout_team = team_of(services.config, name, view.request.labels)
        if team is not None and rollout_team != team:
            continue
        stamps = view.timestamps
        recent.append(
            dashboard.RecentRollout(
                id=view.id,
                service=name,
                team=rollout_team,
                state=view.state.value,
                outcome=_outcome(view.state.value, view.outcome_reason, stamps.started_at),
                submitted_at=stamps.submitted_at.strftime("%Y-%m-%d %H:%M:%S"),
                duration_seconds=_seconds(stamps.started_at, stamps.finished_at),
            )
        )
    return HTMLResponse(dashboard.render(result, recent[:20]))


def _outcome(state: str, reason: str | None, started_at: datetime | None) -> str:
    if state in ("promoted", "rolled_back", "aborted", "failed"):
        return dora.outcome_of(state, reason, started_at).value
    return state


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return (end - start).total_seconds() if start and end else None
