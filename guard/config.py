"""Typed configuration: YAML file, then environment overrides, then validation.

SREs tune thresholds per service, so every mistake must name the exact key and the fix; a typo
silently ignored would leave a service guarded by defaults nobody chose. Unknown keys are errors.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
import typing
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from alerts.config import AlertsConfig
from guard.models import CanaryStep, Scope

ENV_PREFIX = "GUARD_"
PLACEHOLDER = re.compile(r"\{(selector|group_by|window)\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Tier(_Strict):
    """A breach of either limit puts the interval in this tier."""

    error_rate: float = Field(gt=0, le=1, description="Fraction of 5xx responses, 0.05 = 5 %")
    latency_seconds: float = Field(gt=0, description="Latency at the configured quantile")


class Tiers(_Strict):
    """Severity tiers; defaults from the product spec."""

    critical: Tier = Tier(error_rate=0.05, latency_seconds=3.0)
    high: Tier = Tier(error_rate=0.02, latency_seconds=2.0)
    medium: Tier = Tier(error_rate=0.01, latency_seconds=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> Tiers:
        if not (
            self.medium.error_rate <= self.high.error_rate <= self.critical.error_rate
            and self.medium.latency_seconds
            <= self.high.latency_seconds
            <= self.critical.latency_seconds
        ):
            raise ValueError("tiers must not decrease: medium <= high <= critical for each metric")
        return self


LABEL_NAME = r"^[a-zA-Z_][a-zA-Z0-9_]*$"


class Queries(_Strict):
    """Batched PromQL templates: one query per metric per tick, for every active rollout at once.

    Placeholders, filled by the guard: {selector} (label matchers picking the versions being
    judged, values escaped), {group_by} (the labels that name a version) and {window}. The
    series must carry the namespace and the pod-template-hash as labels, which Prometheus's
    Kubernetes pod discovery with a labelmap of pod labels gives; name them below if yours differ.
    Errors are counted from their own series: a version without any 5xx has no 5xx series, and
    that reads as zero errors, never as "no data".
    """

    namespace_label: str = Field(default="namespace", pattern=LABEL_NAME)
    revision_label: str = Field(default="pod_template_hash", pattern=LABEL_NAME)
    requests: str = "sum by ({group_by}) (increase(http_requests_total{{selector}}[{window}]))"
    errors: str = (
        'sum by ({group_by}) (increase(http_requests_total{{selector},code=~"5.."}[{window}]))'
    )
    latency_buckets: str = (
        "sum by ({group_by}, le) "
        "(increase(http_request_duration_seconds_bucket{{selector}}[{window}]))"
    )

    @model_validator(mode="after")
    def _placeholders(self) -> Queries:
        for name in ("requests", "errors", "latency_buckets"):
            template: str = getattr(self, name)
            leftover = PLACEHOLDER.sub("", template)
            unknown = re.findall(r"(?<!\{)\{([a-z_]+)\}(?!\})", leftover)
            if unknown:
                raise ValueError(
                    f"{name}: unknown placeholder {{{unknown[0]}}}; known: "
                    "{selector} {group_by} {window}"
                )
            for needed in ("{selector}", "{group_by}"):
                if needed not in template:
                    raise ValueError(f"{name}: must contain {needed} so rollouts can be batched")
        return self


class AnalysisConfig(_Strict):
    """How a release is judged; overridable per service."""

    interval_seconds: float = Field(default=10.0, ge=0.5, le=3600)
    window_seconds: float = Field(
        default=30.0, ge=1, le=3600, description="Range of rate() and increase()"
    )
    latency_quantile: float = Field(default=0.99, gt=0, lt=1)
    min_requests: float = Field(
        default=20,
        ge=1,
        description="Fewer requests than this, even summed over the step, is inconclusive",
    )
    confidence: float = Field(
        default=0.99,
        ge=0.5,
        lt=1,
        description="A rate breaches a tier only if its lower confidence bound is above it",
    )
    significance: float = Field(
        default=0.00003,
        gt=0,
        le=0.2,
        description="p-value under which the new version is worse than the stable one",
    )
    hold_alert_after_seconds: float = Field(
        default=120,
        ge=0,
        description="Inconclusive or unavailable metrics for this long: hold and alert",
    )
    healthy_intervals_to_promote: int = Field(
        default=3, ge=1, le=1000, description="Healthy intervals after the update is complete"
    )
    rollback_timeout_seconds: float = Field(
        default=600, gt=0, description="A rollback not verified by then fails and alerts"
    )
    high_consecutive_to_rollback: int = Field(default=2, ge=1, le=100)
    medium_consecutive_to_rollback: int = Field(default=3, ge=1, le=100)
    tiers: Tiers = Tiers()
    queries: Queries = Queries()


DEFAULT_CANARY_STEPS: tuple[CanaryStep, ...] = (10, 25, 50, 100)


class CanaryConfig(_Strict):
    """Traffic steps of a canary; each step is analysed before the next."""

    steps: list[CanaryStep] = Field(
        default_factory=lambda: list(DEFAULT_CANARY_STEPS), min_length=1
    )
    intervals_per_step: int | None = Field(
        default=None, ge=1, le=1000, description="Healthy intervals per step; None: as promotion"
    )


class BlueGreenConfig(_Strict):
    """Green beside blue; analysed on preview traffic, then switched in one Service update."""

    preview_service: str | None = Field(
        default=None, description="Preview Service name; default '<deployment>-preview'"
    )
    active_service: str | None = Field(default=None, description="Default: the deployment's name")
    smoke_url: str | None = Field(
        default=None,
        description="Optional URL (e.g. the preview Service's health check) that must answer "
        "2xx before the switch; 3 failures in a row roll back",
    )
    post_promotion_intervals: int = Field(default=3, ge=1, le=1000)
    scale_down_delay_seconds: float = Field(
        default=30.0, ge=0, le=86400, description="Blue kept scaled up this long after the window"
    )


class RouterConfig(_Strict):
    """A Gateway API HTTPRoute whose backendRefs weights the canary sets exactly."""

    type: Literal["gateway-api"] = "gateway-api"
    httproute: str = Field(description="Name of the HTTPRoute in the Deployment's namespace")
    stable_service: str | None = Field(default=None, description="Default: the deployment's name")


class ServiceConfig(_Strict):
    """Per-service overrides; keys left out inherit the global `analysis` section."""

    analysis: dict[str, Any] = Field(default_factory=dict)
    team: str | None = None
    canary: CanaryConfig = CanaryConfig()
    bluegreen: BlueGreenConfig = BlueGreenConfig()
    router: RouterConfig | None = None


DEFAULT_SERVICE = ServiceConfig()


class FreezeWindow(_Strict):
    """A period in which no rollout starts unless it carries `override_freeze` with a reason."""

    name: str = Field(min_length=1, max_length=128)
    start: datetime
    end: datetime
    services: list[str] = Field(default_factory=list, description="Empty: every service")

    @model_validator(mode="after")
    def _ordered(self) -> FreezeWindow:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("start and end must carry a time zone, e.g. 2026-12-24T00:00:00Z")
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self

    def active(self, service: str, now: datetime) -> bool:
        applies = not self.services or service in self.services
        return applies and self.start <= now < self.end


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    max_body_bytes: int = Field(
        default=65536, ge=1024, le=16 * 2**20, description="Larger request bodies get 413"
    )
    access_log: bool = Field(
        default=False,
        description="One log line per HTTP request. Off by default: pipelines poll every few "
        "seconds, the audit log records every change, and the line cost a tenth of a request's CPU",
    )


TOKEN_NAME = r"^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$"


class TokenConfig(_Strict):
    """One API token, known only by its SHA-256; `guard token create` prints both."""

    name: str = Field(
        min_length=1,
        max_length=63,
        pattern=TOKEN_NAME,
        description="Who the token is: recorded in the audit log and on the rollouts it submits",
    )
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Hex SHA-256 of the token")
    scopes: list[Scope] = Field(min_length=1, description="deploy, operate and/or read")


class AuthConfig(_Strict):
    """Bearer tokens of the API. With none configured every API call answers 401."""

    tokens: list[TokenConfig] = Field(default_factory=list)
    tokens_file: Path | None = Field(
        default=None,
        description="YAML list of more tokens in the same form (e.g. a mounted Secret); read at "
        "start",
    )

    @model_validator(mode="after")
    def _unique(self) -> AuthConfig:
        names = [t.name for t in self.tokens]
        hashes = [t.sha256 for t in self.tokens]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate is not None:
            raise ValueError(f"tokens: the name {duplicate!r} is used twice; names must be unique")
        if len(set(hashes)) != len(hashes):
            raise ValueError("tokens: two entries have the same sha256; create a token per entry")
        return self


class StoreConfig(_Strict):
    """Where rollouts are kept, and how replicas share them.

    SQLite (the default, a file in data_dir) serves one replica. For several replicas point
    them all at one PostgreSQL database, e.g. `postgresql://guard:secret@db:5432/guard`
    (psycopg 3): each unfinished rollout is then leased to one replica, renewed once half the
    lease has run, and taken over by another at most `lease_seconds` after its owner died.
    """

    url: str | None = Field(
        default=None,
        description="SQLAlchemy URL, e.g. postgresql://user:pass@host:5432/db for several "
        "replicas; default SQLite in data_dir (one replica)",
    )
    data_dir: Path = Path("./data")
    lease_seconds: float = Field(
        default=15.0,
        ge=1,
        le=3600,
        description="A replica's hold on a rollout; another replica takes over this long after "
        "it stops renewing. At least 3 ticks, and longer than one tick's Kubernetes calls",
    )

    @property
    def resolved_url(self) -> str:
        return self.url or f"sqlite:///{self.data_dir / 'guard.db'}"


class PrometheusConfig(_Strict):
    url: str = "http://127.0.0.1:9090"
    timeout_seconds: float = Field(default=5.0, gt=0, le=120)


class KubernetesConfig(_Strict):
    kubeconfig: Path | None = Field(default=None, description="None: in-cluster, else kubeconfig")
    context: str | None = None
    request_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    retry_attempts: int = Field(
        default=3,
        ge=0,
        le=10,
        description="Retries within one call on 5xx, 429, 409 Conflict, timeouts, lost connections",
    )
    retry_initial_backoff_seconds: float = Field(
        default=0.2, gt=0, le=10, description="Doubles per retry (capped at 5 s), with jitter"
    )
    give_up_after_seconds: float = Field(
        default=300,
        gt=0,
        le=86400,
        description="A rollout whose Kubernetes calls keep failing (API down, 5xx) this long "
        "fails and alerts instead of retrying forever",
    )


class SchedulerConfig(_Strict):
    tick_seconds: float = Field(default=1.0, ge=0.1, le=60)


class GuardConfig(_Strict):
    """The whole configuration file."""

    server: ServerConfig = ServerConfig()
    store: StoreConfig = StoreConfig()
    prometheus: PrometheusConfig = PrometheusConfig()
    kubernetes: KubernetesConfig = KubernetesConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    analysis: AnalysisConfig = AnalysisConfig()
    services: dict[str, ServiceConfig] = Field(default_factory=dict)
    alerts: AlertsConfig = AlertsConfig()
    freeze_windows: list[FreezeWindow] = Field(default_factory=list)
    auth: AuthConfig = AuthConfig()

    @model_validator(mode="after")
    def _services_resolve(self) -> GuardConfig:
        problems: list[str] = []
        if self.store.lease_seconds < 3 * self.scheduler.tick_seconds:
            problems.append(
                f"store.lease_seconds: {self.store.lease_seconds:g} is less than 3 ticks "
                f"(scheduler.tick_seconds is {self.scheduler.tick_seconds:g}), so a live replica "
                "could lose its rollouts between two ticks; raise it or lower the tick"
            )
        for name, service in self.services.items():
            try:
                self.analysis_for(name)
            except ValidationError as exc:
                prefix = f"services.{name}.analysis"
                problems += _explain(exc, service.analysis, prefix=prefix)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def service(self, name: str) -> ServiceConfig:
        """The service's section, or the defaults when it has none (one frozen instance: a
        tick asks for every rollout's service, and building a model each time showed up in
        the profile at a thousand rollouts)."""
        return self.services.get(name) or DEFAULT_SERVICE

    def active_freeze(self, service: str, now: datetime) -> FreezeWindow | None:
        return next((w for w in self.freeze_windows if w.active(service, now)), None)

    def analysis_for(self, service: str) -> AnalysisConfig:
        """The global analysis section with the service's overrides merged in, key by key."""
        override = self.services.get(service)
        if override is None or not override.analysis:
            return self.analysis
        merged = _deep_merge(self.analysis.model_dump(), override.analysis)
        return AnalysisConfig.model_validate(merged)


class ConfigError(Exception):
    """Every problem of a config, each as `path: message`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def load_config(path: Path | None, environ: Mapping[str, str] | None = None) -> GuardConfig:
    """Read YAML (if any), apply GUARD_SECTION__KEY environment overrides, validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from exc
        except yaml.YAMLError as exc:
            raise ConfigError([f"{path}: not valid YAML: {exc}"]) from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError([f"{path}: the top level must be a mapping of sections"])
        raw = loaded or {}
    raw = apply_env_overrides(raw, os.environ if environ is None else environ)
    return parse_config(raw)


def parse_config(raw: dict[str, Any]) -> GuardConfig:
    """Validate a raw mapping; a partial `analysis` keeps the defaults of the keys it omits."""
    if isinstance(raw.get("analysis"), Mapping):
        raw = {**raw, "analysis": _deep_merge(AnalysisConfig().model_dump(), raw["analysis"])}
    try:
        return GuardConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, raw)) from exc


def apply_env_overrides(raw: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """GUARD_PROMETHEUS__URL=... sets prometheus.url; values are parsed as YAML scalars."""
    result = copy.deepcopy(raw)
    for key, value in sorted(environ.items()):
        if not key.startswith(ENV_PREFIX) or "__" not in key:
            continue
        path = [part.lower() for part in key[len(ENV_PREFIX) :].split("__")]
        node = result
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            node[path[-1]] = yaml.safe_load(value) if value else value
    return result


def _deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _explain(
    exc: ValidationError,
    raw: Mapping[str, Any],
    *,
    prefix: str = "",
    root: type[BaseModel] | None = None,
) -> list[str]:
    problems: list[str] = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        path = ".".join([prefix, *map(str, loc)] if prefix else map(str, loc))
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown key" + _suggestion(
                loc, root or (AnalysisConfig if prefix else GuardConfig)
            )
        elif error["type"] == "value_error" and "ctx" in error:
            message = str(error["ctx"].get("error", message))
        if (not loc and "\n" in message) or message.startswith(("services.", "store.")):
            problems += message.splitlines()
            continue
        problems.append(f"{path or '(top level)'}: {message}")
    return problems


def _suggestion(loc: tuple[int | str, ...], root: type[BaseModel]) -> str:
    node: Any = root
    for part in loc[:-1]:
        if isinstance(node, type) and issubclass(node, BaseModel):
            field = node.model_fields.get(str(part))
            node = field.annotation if field else None
        elif typing.get_origin(node) is dict:  # e.g. services: dict[str, ServiceConfig]
            node = typing.get_args(node)[1]
        else:
            return ""
    if not (isinstance(node, type) and issubclass(node, BaseModel)):
        return ""
    known = list(node.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    hint = f"; did you mean '{close[0]}'? " if close else "; "
    return f"{hint}known keys: {', '.join(known)}"
