"""Alertmanager API v2 (`POST /api/v2/alerts`): the guard as one more alert source.

One alert per rollout, identified by its labels (`alertname="DeployGuardRollout"`, rollout,
namespace, deployment, service, severity). Firing kinds post it with `endsAt` far ahead (the
guard does not re-post, so Alertmanager's resolve timeout must not close it); resolving kinds post
the same labels with `endsAt` = now. When an incident escalates to another severity, the old
label set is resolved in the same request, so no stale alert stays open.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import Field

from guard.models import Severity

from .base import AlertEvent, HttpPost, ReceiverSettings, RenderContext, json_post
from .text import description, evidence_lines, queries, title, versions

ALERTNAME = "DeployGuardRollout"


class AlertmanagerSettings(ReceiverSettings):
    type: Literal["alertmanager"] = "alertmanager"
    url: str = Field(description="Base URL, e.g. http://alertmanager:9093")
    firing_hours: float = Field(
        default=24, gt=0, le=24 * 30, description="endsAt of a firing alert"
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Extra labels, e.g. team")


class AlertmanagerNotifier:
    type = "alertmanager"
    settings_model = AlertmanagerSettings

    def render(
        self, event: AlertEvent, settings: AlertmanagerSettings, ctx: RenderContext
    ) -> HttpPost:
        url = settings.url.rstrip("/") + "/api/v2/alerts"
        return json_post(url, payload(event, settings, now=ctx.now))


def labels(event: AlertEvent, severity: Severity, extra: dict[str, str]) -> dict[str, str]:
    return {
        **extra,
        "alertname": ALERTNAME,
        "rollout_id": event.rollout_id,
        "namespace": event.namespace,
        "deployment": event.deployment,
        "service": event.service,
        "severity": severity.value,
    }


def annotations_for(event: AlertEvent) -> dict[str, str]:
    notes = {
        "summary": f"{title(event)}: {event.summary}",
        "description": description(event),
        "event": event.kind.value,
        "action": event.action,
        "outcome": event.outcome,
        "versions": versions(event),
        "evidence": "\n".join(evidence_lines(event)),
        "queries": "\n".join(queries(event)),
    }
    if "rollout" in event.links:
        notes["rollout_url"] = event.links["rollout"]
    return {k: v for k, v in notes.items() if v}


def payload(
    event: AlertEvent, settings: AlertmanagerSettings, *, now: datetime
) -> list[dict[str, Any]]:
    """The alerts to post: this event's, plus a resolve of the label set it replaces."""
    notes = annotations_for(event)
    generator = event.links.get("rollout", "")
    alerts: list[dict[str, Any]] = []
    previous = event.incident_severity
    if event.kind.firing:
        ends = now + timedelta(hours=settings.firing_hours)
        alerts.append(_alert(labels(event, event.severity, settings.labels), notes, event, ends))
        if previous is not None and previous is not event.severity:
            old = labels(event, previous, settings.labels)
            alerts.append(_alert(old, notes, event, now))
    else:
        severity = previous if previous is not None else event.severity
        alerts.append(_alert(labels(event, severity, settings.labels), notes, event, now))
    for alert in alerts:
        if generator:
            alert["generatorURL"] = generator
    return alerts


def _alert(
    label_set: dict[str, str], notes: dict[str, str], event: AlertEvent, ends: datetime
) -> dict[str, Any]:
    return {
        "labels": label_set,
        "annotations": notes,
        "startsAt": event.at.isoformat(),
        "endsAt": ends.isoformat(),
    }
