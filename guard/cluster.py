"""Plain snapshots of the objects a strategy looks at besides its own Deployment.

Canary and blue-green decide from more than one Deployment: the canary or green Deployment, the
Services whose selectors carry traffic, an HTTPRoute's weights. A strategy declares what it
needs (`ClusterNeeds`); the engine lists each namespace once per tick (`KubeClient.read_namespace`)
and hands each strategy exactly what it asked for as one `ClusterSnapshot`, so strategies stay
pure and testable from data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # kube.py builds these snapshots and imports this module
    from guard.kube import DeploymentSnapshot

TRACK_LABEL = "deploy-guard.io/track"
MANAGED_LABEL = "deploy-guard.io/managed-by"
HTTPROUTE_GROUP, HTTPROUTE_VERSION, HTTPROUTE_PLURAL = (
    "gateway.networking.k8s.io",
    "v1",
    "httproutes",
)


@dataclass(frozen=True)
class ClusterNeeds:
    """Names of the objects (in the rollout's namespace) a strategy wants to see this tick."""

    deployments: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    httproutes: tuple[str, ...] = ()
    probes: tuple[str, ...] = ()  # URLs to GET (smoke checks); run by the engine, not kube

    def __bool__(self) -> bool:
        return bool(self.deployments or self.services or self.httproutes)


@dataclass(frozen=True)
class ProbeResult:
    """One smoke-check GET: the status code, or why there was none."""

    url: str
    status: int | None
    error: str = ""
    elapsed_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def describe(self) -> str:
        return f"{self.url}: HTTP {self.status}" if self.status else f"{self.url}: {self.error}"


@dataclass(frozen=True)
class ServiceSnapshot:
    name: str
    selector: dict[str, str]
    ports: list[dict[str, Any]]


@dataclass(frozen=True)
class BackendWeight:
    """One backendRef of an HTTPRoute rule: a Service and its (relative) weight."""

    name: str
    weight: int


@dataclass(frozen=True)
class RouteSnapshot:
    """The backends of every rule of an HTTPRoute, in order."""

    name: str
    rules: list[list[BackendWeight]]

    def weights(self, service: str) -> dict[str, int]:
        """Backend weights of the first rule that sends traffic to `service`."""
        for rule in self.rules:
            if any(b.name == service for b in rule):
                return {b.name: b.weight for b in rule}
        return {}


@dataclass(frozen=True)
class ClusterSnapshot:
    """What a strategy asked to see; a name mapped to None does not exist."""

    deployments: dict[str, DeploymentSnapshot | None] = field(default_factory=dict)
    services: dict[str, ServiceSnapshot | None] = field(default_factory=dict)
    httproutes: dict[str, RouteSnapshot | None] = field(default_factory=dict)
    probes: dict[str, ProbeResult] = field(default_factory=dict)

    def deployment(self, name: str) -> DeploymentSnapshot | None:
        return self.deployments.get(name)

    def service(self, name: str) -> ServiceSnapshot | None:
        return self.services.get(name)

    def httproute(self, name: str) -> RouteSnapshot | None:
        return self.httproutes.get(name)


def service_snapshot(raw: dict[str, Any]) -> ServiceSnapshot:
    spec = raw.get("spec") or {}
    return ServiceSnapshot(
        name=raw["metadata"]["name"],
        selector=dict(spec.get("selector") or {}),
        ports=list(spec.get("ports") or []),
    )


def route_snapshot(raw: dict[str, Any]) -> RouteSnapshot:
    rules = []
    for rule in (raw.get("spec") or {}).get("rules") or []:
        refs = rule.get("backendRefs") or []
        rules.append([BackendWeight(r["name"], int(r.get("weight", 1))) for r in refs])
    return RouteSnapshot(name=raw["metadata"]["name"], rules=rules)


def reweighted_rules(
    rules: list[dict[str, Any]], stable: str, weights: dict[str, int]
) -> list[dict[str, Any]]:
    """Rules with the weights set on every rule that routes to `stable`.

    A backend that is not yet listed is added with the stable backend's port; one set to weight 0
    (other than the stable one) is removed, so the route ends exactly as it was before the
    canary. Rules that do not route to `stable` are left alone.
    """
    result = []
    for rule in rules:
        refs = list(rule.get("backendRefs") or [])
        base = next((r for r in refs if r.get("name") == stable), None)
        if base is None:
            result.append(rule)
            continue
        for name, weight in weights.items():
            existing = next((r for r in refs if r.get("name") == name), None)
            if weight == 0 and name != stable:
                refs = [r for r in refs if r.get("name") != name]
            elif existing is not None:
                refs = [{**r, "weight": weight} if r is existing else r for r in refs]
            else:
                refs.append({**base, "name": name, "weight": weight})
        result.append({**rule, "backendRefs": refs})
    return result
