"""The `alerts:` section of the guard's config: receivers, routes and delivery.

Each receiver is validated by its channel's own settings model (found in `alerts.registry` by
`type`), so adding a channel never touches this file. Secrets appear here only as the *name* of
an environment variable or file (`url_env`, `routing_key_file`, ...).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from guard.models import Severity

from .base import AlertEvent, AlertKind, ReceiverSettings
from .log import LogSettings
from .registry import NOTIFIERS

DEFAULT_RECEIVER = "log"

if TYPE_CHECKING:
    AnyReceiver = ReceiverSettings
else:
    AnyReceiver = Annotated[
        Union[tuple(n.settings_model for n in NOTIFIERS.values())],  # noqa: UP007
        Field(discriminator="type"),
    ]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Route(_Strict):
    """Events matching every non-empty filter go to `receivers`; an empty filter matches all."""

    receivers: list[str] = Field(min_length=1)
    events: list[AlertKind] = Field(default_factory=list)
    services: list[str] = Field(default_factory=list)
    severities: list[Severity] = Field(default_factory=list)

    def matches(self, event: AlertEvent) -> bool:
        return (
            (not self.events or event.kind in self.events)
            and (not self.services or event.service in self.services)
            and (not self.severities or event.severity in self.severities)
        )


class DeliveryConfig(_Strict):
    """How the outbox sender retries; a receiver that is down never delays a tick."""

    poll_seconds: float = Field(default=1.0, ge=0.1, le=60, description="Sender job interval")
    timeout_seconds: float = Field(default=5.0, gt=0, le=60, description="Per HTTP request")
    initial_backoff_seconds: float = Field(default=1.0, gt=0, le=3600)
    max_backoff_seconds: float = Field(default=300.0, gt=0, le=86400)
    expire_after_seconds: float = Field(
        default=6 * 3600, gt=0, description="Give up on an alert this long after it was written"
    )
    batch_size: int = Field(default=50, ge=1, le=1000)
    lease_seconds: float = Field(
        default=60.0, gt=0, description="A claim not acknowledged by then may be taken again"
    )

    @model_validator(mode="after")
    def _lease_outlives_request(self) -> DeliveryConfig:
        if self.lease_seconds <= self.timeout_seconds:
            raise ValueError("lease_seconds must be longer than timeout_seconds")
        return self


class AlertsConfig(_Strict):
    """Receivers by name, routes by event kind, service and severity, and delivery tuning."""

    receivers: dict[str, AnyReceiver] = Field(
        default_factory=dict, description="Empty: one 'log' receiver (the guard's own log)"
    )
    routes: list[Route] = Field(
        default_factory=list, description="Empty: every event to every receiver"
    )
    delivery: DeliveryConfig = DeliveryConfig()
    guard_url: str | None = Field(
        default=None, description="External URL of the guard's API, for links in alerts"
    )

    @model_validator(mode="after")
    def _routes_name_receivers(self) -> AlertsConfig:
        known = sorted(self.effective_receivers())
        for index, route in enumerate(self.routes):
            for name in route.receivers:
                if name not in known:
                    raise ValueError(
                        f"routes.{index}.receivers: unknown receiver {name!r}; "
                        f"known: {', '.join(known)}"
                    )
        return self

    def effective_receivers(self) -> dict[str, ReceiverSettings]:
        if self.receivers:
            return dict(self.receivers)
        return {DEFAULT_RECEIVER: LogSettings()}

    def route(self, event: AlertEvent) -> list[str]:
        """The receivers an event goes to, each once, in config order."""
        receivers = self.effective_receivers()
        if not self.routes:
            return list(receivers)
        chosen: dict[str, None] = {}
        for route in self.routes:
            if route.matches(event):
                chosen.update(dict.fromkeys(route.receivers))
        return list(chosen)
