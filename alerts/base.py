"""The notifier interface: one module per channel, registered in `alerts.registry`.

Every channel tells on-call the same story from one `AlertEvent`: what broke, the evidence, what
the guard did and whether it worked. A notifier only *renders* that event into an `Outbound`
message (a pure function, unit-tested byte for byte); the guard's sender does the I/O, so
retries, backoff and deduplication are written once, not once per channel.
"""

from __future__ import annotations

import builtins
import enum
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from guard.models import Decision, Severity


class AlertKind(enum.StrEnum):
    """What happened; `firing` kinds open (or escalate) a rollout's incident, the rest close it."""

    PREFLIGHT_REFUSED = "preflight_refused"
    HOLD = "hold"
    HOLD_CLEARED = "hold_cleared"
    ROLLBACK_STARTED = "rollback_started"
    ROLLBACK_VERIFIED = "rollback_verified"
    ROLLBACK_FAILED = "rollback_failed"
    ROLLOUT_FAILED = "rollout_failed"
    PROMOTED = "promoted"
    CONFIG_REFUSED = "config_refused"
    CONFIG_RELOADED = "config_reloaded"

    @property
    def firing(self) -> bool:
        return self in FIRING_KINDS


FIRING_KINDS = frozenset(
    {
        AlertKind.PREFLIGHT_REFUSED,
        AlertKind.HOLD,
        AlertKind.ROLLBACK_STARTED,
        AlertKind.ROLLBACK_FAILED,
        AlertKind.ROLLOUT_FAILED,
        AlertKind.CONFIG_REFUSED,
    }
)


class AlertEvent(BaseModel):
    """One thing on-call should hear about, complete enough to act on without the guard's UI.

    Stored as JSON in the outbox, so it must only hold data, never a secret.
    """

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="Stable per rollout, kind and episode: '<rollout>/<kind>/<n>'")
    kind: AlertKind
    at: datetime
    rollout_id: str = Field(description="Empty for the guard's own events (config reloads)")
    namespace: str
    deployment: str
    service: str
    strategy: str
    step: str
    severity: Severity
    incident_key: str = Field(description="One per rollout; shared by trigger and resolve")
    incident_severity: Severity | None = Field(
        default=None, description="Severity of the incident this event escalates or resolves"
    )
    summary: str = Field(description="What broke (or what happened), one line")
    action: str = Field(description="What the guard did")
    outcome: str = Field(description="Whether it worked, as far as the guard knows now")
    message: str = ""
    images: dict[str, str] = Field(default_factory=dict)
    previous_images: dict[str, str] = Field(default_factory=dict)
    commit_sha: str | None = None
    decision: Decision | None = Field(default=None, description="The evidence behind it")
    rollback_seconds: float | None = None
    links: dict[str, str] = Field(default_factory=dict)

    @property
    def status(self) -> Literal["firing", "resolved"]:
        return "firing" if self.kind.firing else "resolved"

    @property
    def target(self) -> str:
        return f"{self.namespace}/{self.deployment}" if self.namespace else self.deployment


@dataclass(frozen=True)
class HttpPost:
    """An HTTP POST for the sender to make; `url` may hold a secret and is never logged."""

    url: str = field(repr=False)
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LogLine:
    """A line for the guard's own log (the fallback channel)."""

    text: str


Outbound = HttpPost | LogLine


class ReceiverSettings(BaseModel):
    """Base of every channel's settings; a channel adds `type: Literal[...]` and its own keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str

    def secret_refs(self) -> dict[str, SecretRef]:
        """Where each secret this receiver needs comes from; read at send time, never stored."""
        return {}


@dataclass(frozen=True)
class SecretRef:
    """A secret's source: an environment variable, a file, or a literal that is not secret."""

    env: str | None = None
    file: str | None = None
    literal: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class RenderContext:
    """What a notifier may use besides the event: resolved secrets and the delivery's key."""

    secrets: dict[str, str] = field(repr=False)
    delivery_key: str
    now: datetime


class Notifier(Protocol):
    """One channel: a settings model and a pure renderer."""

    type: str

    @property
    def settings_model(self) -> builtins.type[ReceiverSettings]:
        """The pydantic model that validates this channel's receiver settings."""
        ...

    def render(self, event: AlertEvent, settings: Any, ctx: RenderContext) -> Outbound:
        """The message for one receiver; deterministic in its arguments, no I/O."""
        ...


def json_post(url: str, payload: Any, headers: dict[str, str] | None = None) -> HttpPost:
    """A POST with a canonical JSON body (sorted keys), so signatures and tests are stable."""
    body = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()
    return HttpPost(
        url=url, body=body, headers={"Content-Type": "application/json", **(headers or {})}
    )
