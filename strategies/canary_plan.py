"""The arithmetic and the Kubernetes actions of a canary, kept apart from its state machine.

Without a router, traffic follows pods: the Service spreads requests evenly over the ready pods
of both Deployments, so a weight can only be approximated by a replica ratio, and the response
says which weight each step really got. With a Gateway API HTTPRoute the weight is exact and the
canary only needs enough pods to carry its share.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

from guard.cluster import TRACK_LABEL
from guard.config import ServiceConfig
from guard.kube import HASH_LABEL
from guard.models import CanaryStep, RolloutRequest

from .base import Action

CANARY_TRACK = "canary"
MAX_CANARY_FACTOR = 10  # never more than 10x the stable replicas, whatever the weight asks


@dataclass(frozen=True)
class Names:
    """The objects one canary rollout touches."""

    namespace: str
    stable: str
    canary: str
    route: str | None
    stable_service: str
    canary_service: str

    @classmethod
    def of(cls, request: RolloutRequest, service: ServiceConfig) -> Names:
        router = service.router
        return cls(
            namespace=request.namespace,
            stable=request.deployment,
            canary=f"{request.deployment}-canary",
            route=router.httproute if router else None,
            stable_service=(router.stable_service if router else None) or request.deployment,
            canary_service=f"{request.deployment}-canary",
        )


@dataclass(frozen=True)
class Split:
    """One step's traffic split: requested and effective weight, and the pods behind it."""

    weight: int
    effective_weight: float
    canary_replicas: int
    stable_replicas: int

    def to_json(self) -> dict[str, Any]:
        return {
            "weight": self.weight,
            "effective_weight": self.effective_weight,
            "canary_replicas": self.canary_replicas,
            "stable_replicas": self.stable_replicas,
        }


def replica_split(weight: int, stable_replicas: int) -> Split:
    """Canary pods beside the full stable set so that canary/all is closest to `weight`.

    At least one pod (a canary without pods tells nothing); ties go to the smaller canary.
    """
    n = max(stable_replicas, 1)
    target = weight / 100
    candidates = range(1, MAX_CANARY_FACTOR * n + 1)
    canary = min(candidates, key=lambda c: (abs(c / (n + c) - target), c))
    effective = round(100 * canary / (stable_replicas + canary), 1)
    return Split(weight, effective, canary, stable_replicas)


def routed_split(weight: int, stable_replicas: int) -> Split:
    """With a router the weight is exact; the canary gets pods in proportion to its share."""
    canary = max(1, math.ceil(weight * stable_replicas / 100))
    return Split(weight, float(weight), canary, stable_replicas)


def split_for(weight: int, stable_replicas: int, routed: bool) -> Split:
    return (
        routed_split(weight, stable_replicas) if routed else replica_split(weight, stable_replicas)
    )


def traffic_steps(steps: list[CanaryStep], routed: bool) -> list[CanaryStep]:
    """The steps to walk. Without a router, 100 % is the promotion itself (the stable
    Deployment takes the new template), so it is not a canary step of its own."""
    if routed:
        return list(steps)
    return [s for s in steps if isinstance(s, str) or s < 100]


def canary_template(stable_template: dict[str, Any], images: dict[str, str]) -> dict[str, Any]:
    """The stable pod template with the new images and the canary track label."""
    template = copy.deepcopy(stable_template)
    labels = template.setdefault("metadata", {}).setdefault("labels", {})
    labels.pop(HASH_LABEL, None)
    labels[TRACK_LABEL] = CANARY_TRACK
    for container in template.get("spec", {}).get("containers", []):
        if container.get("name") in images:
            container["image"] = images[container["name"]]
    return template


def promoted_template(stable_template: dict[str, Any], images: dict[str, str]) -> dict[str, Any]:
    """What the stable Deployment runs after promotion: its own template, new images."""
    template = canary_template(stable_template, images)
    template["metadata"]["labels"].pop(TRACK_LABEL, None)
    return template


def canary_selector(template: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = dict(template.get("metadata", {}).get("labels", {}))
    labels.pop(HASH_LABEL, None)
    return labels


def apply_canary(
    names: Names, template: dict[str, Any], split: Split, rollout_id: str
) -> list[Action]:
    """Create or resize the canary Deployment and, with a router, set the route's weights."""
    actions = [
        Action(
            "apply_deployment",
            {
                "namespace": names.namespace,
                "name": names.canary,
                "template": template,
                "selector": canary_selector(template),
                "replicas": split.canary_replicas,
                "rollout_id": rollout_id,
            },
        )
    ]
    if names.route is not None:
        actions.append(route_weights(names, 100 - split.weight, split.weight))
    return actions


def route_weights(names: Names, stable: int, canary: int) -> Action:
    return Action(
        "set_route_weights",
        {
            "namespace": names.namespace,
            "name": names.route,
            "stable": names.stable_service,
            "weights": {names.stable_service: stable, names.canary_service: canary},
        },
    )


def routed_setup(
    names: Names, stable_hash: str, stable_selector: dict[str, str], template: dict[str, Any]
) -> list[Action]:
    """Before any canary pod exists: the stable Service pinned to the stable pods only (both
    Deployments share its labels) and a canary Service for the route's second backend."""
    pinned = {**stable_selector, HASH_LABEL: stable_hash}
    return [
        selector_action(names.namespace, names.stable_service, pinned),
        Action(
            "apply_service",
            {
                "namespace": names.namespace,
                "name": names.canary_service,
                "selector": canary_selector(template),
                "ports_from": names.stable_service,
            },
        ),
    ]


def selector_action(namespace: str, service: str, selector: dict[str, str]) -> Action:
    return Action(
        "set_service_selector", {"namespace": namespace, "name": service, "selector": selector}
    )


def remove_canary(names: Names) -> list[Action]:
    """Traffic off the canary first, then the canary gone. A pinned stable Service selector is
    put back only once the canary pods are gone (see the strategy), or it would select them."""
    actions: list[Action] = []
    if names.route is not None:
        actions.append(route_weights(names, 100, 0))
    actions.append(
        Action("delete_deployment", {"namespace": names.namespace, "name": names.canary})
    )
    if names.route is not None:
        actions.append(
            Action("delete_service", {"namespace": names.namespace, "name": names.canary_service})
        )
    return actions


def restore_stable(names: Names, template: dict[str, Any]) -> Action:
    return Action(
        "restore_template",
        {"namespace": names.namespace, "name": names.stable, "template": template},
    )
