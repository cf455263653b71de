"""PagerDuty Events API v2: one incident per rollout, triggered and resolved by `dedup_key`.

Firing kinds (automatic rollback, a hold, a failure) `trigger` with the rollout's incident key;
the rollback verified, the hold cleared or the release promoted `resolve` the same key, so the
page closes itself. Severity follows the tier. The routing key is the credential.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import model_validator

from guard.models import Severity

from .base import (
    AlertEvent,
    AlertKind,
    HttpPost,
    ReceiverSettings,
    RenderContext,
    SecretRef,
    json_post,
)
from .secrets import one_source
from .text import description, evidence_lines, title, versions

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
SEVERITY = {
    Severity.CRITICAL: "critical",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.NONE: "warning",
}


class PagerDutySettings(ReceiverSettings):
    type: Literal["pagerduty"] = "pagerduty"
    routing_key_env: str | None = None
    routing_key_file: str | None = None
    url: str = EVENTS_URL

    @model_validator(mode="after")
    def _one_key(self) -> PagerDutySettings:
        self.secret_refs()
        return self

    def secret_refs(self) -> dict[str, SecretRef]:
        ref = one_source(
            "routing_key", literal=None, env=self.routing_key_env, file=self.routing_key_file
        )
        assert ref is not None
        return {"routing_key": ref}


class PagerDutyNotifier:
    type = "pagerduty"
    settings_model = PagerDutySettings

    def render(
        self, event: AlertEvent, settings: PagerDutySettings, ctx: RenderContext
    ) -> HttpPost:
        return json_post(settings.url, payload(event, ctx.secrets["routing_key"]))


def severity(event: AlertEvent) -> str:
    if event.kind is AlertKind.ROLLBACK_FAILED:
        return "critical"
    return SEVERITY[event.severity]


def payload(event: AlertEvent, routing_key: str) -> dict[str, Any]:
    """A `trigger` for firing kinds, a `resolve` of the same dedup key for the others."""
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "dedup_key": event.incident_key,
        "event_action": "trigger" if event.kind.firing else "resolve",
        "client": "Deploy Guard",
    }
    if event.links:
        body["links"] = [{"href": url, "text": name} for name, url in sorted(event.links.items())]
        body["client_url"] = event.links.get("rollout", next(iter(event.links.values())))
    if not event.kind.firing:
        return body
    body["payload"] = {
        "summary": f"{title(event)}: {event.summary}"[:1024],
        "source": event.target,
        "severity": severity(event),
        "timestamp": event.at.isoformat(),
        "component": event.service,
        "group": event.namespace,
        "class": event.kind.value,
        "custom_details": {
            "event": event.kind.value,
            "rollout_id": event.rollout_id,
            "versions": versions(event),
            "strategy": event.strategy,
            "step": event.step,
            "evidence": evidence_lines(event),
            "action": event.action,
            "outcome": event.outcome,
            "description": description(event),
        },
    }
    return body
