"""Domain vocabulary shared by every layer.

Analyzers, strategies, the store, the API and the CLI all speak in these types, so that a
decision made in a pure function reaches the API, the alert and the report unchanged.
"""

from __future__ import annotations

import enum
import itertools
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# The reference grammar of the distribution spec: [registry/]path[:tag][@digest].
IMAGE_REFERENCE = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*:[0-9a-fA-F]{32,})?$"
)
# Kubernetes label values (and the name part of a key): at most 63 alphanumerics, '-', '_', '.',
# starting and ending alphanumeric; a value may be empty. A key may carry a DNS subdomain prefix.
LABEL_VALUE = re.compile(r"^(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


def _dns_label(value: str) -> str:
    if len(value) > 63 or not DNS1123_LABEL.match(value):
        raise ValueError(
            "must be a DNS-1123 label: at most 63 lower-case letters, digits or '-', "
            "starting and ending with a letter or digit (e.g. 'shop')"
        )
    return value


def _dns_subdomain(value: str) -> str:
    if len(value) > 253 or not DNS1123_SUBDOMAIN.match(value):
        raise ValueError(
            "must be a DNS-1123 subdomain: lower-case letters, digits, '-' and '.', "
            "starting and ending with a letter or digit (e.g. 'checkout')"
        )
    return value


def _image_reference(value: str) -> str:
    if len(value) > 512 or not IMAGE_REFERENCE.match(value):
        raise ValueError("must be an image reference like 'registry.example.com/team/app:1.4.2'")
    return value


def _label_key(value: str) -> str:
    prefix, slash, name = value.rpartition("/")
    if (
        not name
        or len(name) > 63
        or not LABEL_VALUE.match(name)
        or (slash and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix)))
    ):
        raise ValueError(
            f"label key {value[:80]!r} is not a Kubernetes label key: an optional DNS subdomain "
            "prefix and '/', then at most 63 letters, digits, '-', '_' or '.', starting and "
            "ending with a letter or digit (e.g. 'team' or 'example.com/tier')"
        )
    return value


def _label_value(value: str) -> str:
    if len(value) > 63 or not LABEL_VALUE.match(value):
        raise ValueError(
            f"label value {value[:80]!r} is not a Kubernetes label value: at most 63 letters, "
            "digits, '-', '_' or '.', starting and ending with a letter or digit (e.g. 'payments')"
        )
    return value


def aware(value: datetime | None) -> datetime | None:
    """A time that names its zone and exists in UTC (year 1 at +01:00 does not)."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("must carry a time zone, e.g. '2026-11-23T14:00:00Z'")
    try:
        value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("is out of range once converted to UTC") from exc
    return value


PAUSE_STEP = "pause"
CanaryStep = Annotated[int, Field(ge=1, le=100)] | Literal["pause"]
DnsLabel = Annotated[str, AfterValidator(_dns_label)]
DnsSubdomain = Annotated[str, AfterValidator(_dns_subdomain)]
LabelValue = Annotated[str, AfterValidator(_label_value)]
ImageReference = Annotated[str, AfterValidator(_image_reference)]


class RolloutState(enum.StrEnum):
    """Where a rollout is; the last five are terminal."""

    PENDING = "pending"
    PROGRESSING = "progressing"
    PAUSED = "paused"
    ROLLING_BACK = "rolling_back"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    ABORTED = "aborted"
    FAILED = "failed"
    REFUSED = "refused"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {
        RolloutState.PROMOTED,
        RolloutState.ROLLED_BACK,
        RolloutState.ABORTED,
        RolloutState.FAILED,
        RolloutState.REFUSED,
    }
)


class Verdict(enum.StrEnum):
    """What one analysis interval concluded about the new version."""

    CONTINUE = "continue"
    HOLD = "hold"
    INCONCLUSIVE = "inconclusive"
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    REFUSE = "refuse"


class Severity(enum.StrEnum):
    """Severity tier of a breach, ordered from harmless to page-worthy."""

    NONE = "none"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.NONE: 0, Severity.MEDIUM: 1, Severity.HIGH: 2, Severity.CRITICAL: 3}


NEEDS_HUMAN = "hold: needs a human"
"""A decision's `action` when the policy holds and on-call must look (alerts route on it)."""


class ControlCommand(enum.StrEnum):
    """Manual commands an operator or pipeline can send to a running rollout."""

    ABORT = "abort"
    PAUSE = "pause"
    RESUME = "resume"
    PROMOTE = "promote"


class Scope(enum.StrEnum):
    """What an API token may do.

    `deploy` submits rollouts and controls the ones it submitted; `operate` controls any
    rollout, restores revisions and records incidents. Both imply `read`: whoever may change a
    rollout must be able to watch it.
    """

    DEPLOY = "deploy"
    OPERATE = "operate"
    READ = "read"


class ControlRequest(BaseModel):
    """Who asks for a manual command and why; both optional, both recorded."""

    model_config = ConfigDict(extra="forbid")

    actor: str | None = Field(default=None, max_length=128)
    reason: str | None = Field(default=None, max_length=500)

    def describe(self, token: str | None = None) -> str:
        """'alice: why' as the rollout's history shows it; the token's name stands in for a
        missing actor (the audit log names the token either way)."""
        who = self.actor or token or "an operator"
        return f"{who}: {self.reason}" if self.reason else who


class RestoreRequest(BaseModel):
    """`guard rollback SERVICE --to REVISION`: roll a previous revision out again."""

    model_config = ConfigDict(extra="forbid")

    to_revision: int = Field(ge=1, description="Deployment revision, see GET .../revisions")
    namespace: DnsLabel | None = Field(default=None, description="Default: the last rollout's")
    deployment: DnsSubdomain | None = Field(default=None, description="Default: the last rollout's")
    strategy: str | None = Field(
        default=None, max_length=32, description="Default: the last rollout's"
    )
    supersede: bool = False
    actor: str | None = Field(default=None, max_length=128)
    reason: str | None = Field(default=None, max_length=500)


class Evidence(BaseModel):
    """One measured fact behind a decision, complete enough to re-run by hand."""

    model_config = ConfigDict(frozen=True)

    metric: str
    query: str | None = None
    value: float | None = None
    threshold: float | None = None
    comparison: str = ">"
    sample_count: float | None = None
    window_seconds: float | None = None
    severity: Severity = Severity.NONE
    bound: float | None = Field(default=None, description="Confidence bound of `value`")
    statistic: float | None = Field(default=None, description="Test statistic (z)")
    p_value: float | None = None
    note: str = ""


class Decision(BaseModel):
    """A verdict at one moment, with the evidence it rests on and what the guard did."""

    at: datetime
    verdict: Verdict
    severity: Severity = Severity.NONE
    summary: str
    action: str = "none"
    step: str = ""
    evidence: list[Evidence] = Field(default_factory=list)


class RolloutRequest(BaseModel):
    """What a CD pipeline hands to the guard."""

    model_config = ConfigDict(extra="forbid")

    namespace: DnsLabel
    deployment: DnsSubdomain
    images: dict[str, ImageReference] = Field(
        description="New image per container name, e.g. {'checkout': 'registry/checkout:1.4.2'}",
        min_length=1,
        max_length=32,
    )
    strategy: str = Field(default="rolling", max_length=32)
    service: DnsSubdomain | None = Field(
        default=None, description="Service name used for per-service config; the deployment's"
    )
    commit_sha: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{7,64}$")
    commit_time: datetime | None = None
    labels: dict[str, LabelValue] = Field(default_factory=dict, max_length=32)
    steps: list[CanaryStep] | None = Field(
        default=None,
        min_length=1,
        max_length=20,
        description="Canary traffic weights in percent, e.g. [5, 20, 'pause', 50]; "
        "'pause' waits for promote. Default: the service's canary.steps",
    )
    override_freeze: str | None = Field(
        default=None,
        min_length=3,
        max_length=500,
        description="Reason to deploy during an active freeze window; recorded with the rollout",
    )
    supersede: bool = Field(
        default=False,
        description="Roll back the rollout in flight for this Deployment first, then start",
    )
    restore_revision: int | None = Field(
        default=None,
        ge=1,
        description="Set by `guard rollback`: this rollout restores that Deployment revision. "
        "The pre-flight then skips the stable-metrics check (restoring is the cure for it)",
    )

    @field_validator("steps")
    @classmethod
    def _increasing(cls, steps: list[CanaryStep] | None) -> list[CanaryStep] | None:
        weights = [s for s in steps or [] if isinstance(s, int)]
        if steps is not None and not weights:
            raise ValueError("needs at least one traffic weight besides 'pause'")
        if any(b <= a for a, b in itertools.pairwise(weights)):
            raise ValueError("weights must increase from step to step, e.g. [5, 20, 50]")
        return steps

    @field_validator("images")
    @classmethod
    def _container_names(cls, images: dict[str, str]) -> dict[str, str]:
        for name in images:
            _dns_label(name)
        return images

    @field_validator("labels")
    @classmethod
    def _label_keys(cls, labels: dict[str, str]) -> dict[str, str]:
        for key in labels:
            _label_key(key)
        return labels

    @field_validator("commit_time")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return aware(value)

    @property
    def service_name(self) -> str:
        return self.service or self.deployment


class RolloutTimestamps(BaseModel):
    """The moments that DORA metrics and time-to-safety are computed from."""

    submitted_at: datetime
    started_at: datetime | None = None
    first_bad_sample_at: datetime | None = None
    rollback_started_at: datetime | None = None
    rollback_verified_at: datetime | None = None
    finished_at: datetime | None = None


class RolloutView(BaseModel):
    """A rollout as the API returns it."""

    id: str
    state: RolloutState
    step: str
    strategy: str
    request: RolloutRequest
    message: str = ""
    outcome_reason: str | None = None
    submitted_by: str | None = Field(default=None, description="Name of the submitting token")
    timestamps: RolloutTimestamps
    pending_commands: list[ControlCommand] = Field(default_factory=list)
    decisions: list[Decision] = Field(default_factory=list)
    details: dict[str, Any] = Field(default_factory=dict)
