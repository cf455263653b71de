"""Names, selectors and Kubernetes actions of a blue-green rollout, apart from its state machine.

Blue and green share the Deployment's labels, so a Service selecting by those labels would send
traffic to both. While both run, the active Service is pinned to blue's pod-template-hash and
green carries a track label; switching traffic is one selector update either way.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from guard.cluster import TRACK_LABEL, ClusterSnapshot
from guard.config import ServiceConfig
from guard.kube import HASH_LABEL
from guard.models import RolloutRequest

from .base import Action

GREEN_TRACK = "green"


@dataclass(frozen=True)
class Names:
    namespace: str
    blue: str
    green: str
    active: str
    preview: str

    @classmethod
    def of(cls, request: RolloutRequest, service: ServiceConfig) -> Names:
        config = service.bluegreen
        return cls(
            namespace=request.namespace,
            blue=request.deployment,
            green=f"{request.deployment}-green",
            active=config.active_service or request.deployment,
            preview=config.preview_service or f"{request.deployment}-preview",
        )


def green_template(blue_template: dict[str, Any], images: dict[str, str]) -> dict[str, Any]:
    template = copy.deepcopy(blue_template)
    labels = template.setdefault("metadata", {}).setdefault("labels", {})
    labels.pop(HASH_LABEL, None)
    labels[TRACK_LABEL] = GREEN_TRACK
    for container in template.get("spec", {}).get("containers", []):
        if container.get("name") in images:
            container["image"] = images[container["name"]]
    return template


def promoted_template(blue_template: dict[str, Any], images: dict[str, str]) -> dict[str, Any]:
    template = green_template(blue_template, images)
    template["metadata"]["labels"].pop(TRACK_LABEL, None)
    return template


def blue_selector(state: dict[str, Any]) -> dict[str, str]:
    return {**state["active_selector"], HASH_LABEL: state["stable_hash"]}


def green_selector(state: dict[str, Any]) -> dict[str, str]:
    return {**state["active_selector"], TRACK_LABEL: GREEN_TRACK}


def selector(names: Names, service: str, labels: dict[str, str]) -> Action:
    return Action(
        "set_service_selector", {"namespace": names.namespace, "name": service, "selector": labels}
    )


def deploy_green(
    names: Names, state: dict[str, Any], template: dict[str, Any], replicas: int, rollout_id: str
) -> list[Action]:
    """Pin the active Service to blue, start green at full size, point the preview at green."""
    labels = dict(template["metadata"]["labels"])
    return [
        selector(names, names.active, blue_selector(state)),
        Action(
            "apply_deployment",
            {
                "namespace": names.namespace,
                "name": names.green,
                "template": template,
                "selector": labels,
                "replicas": replicas,
                "rollout_id": rollout_id,
            },
        ),
        Action(
            "apply_service",
            {
                "namespace": names.namespace,
                "name": names.preview,
                "selector": green_selector(state),
                "ports_from": names.active,
            },
        ),
    ]


def remove_green(names: Names) -> list[Action]:
    return [
        Action("delete_deployment", {"namespace": names.namespace, "name": names.green}),
        Action("delete_service", {"namespace": names.namespace, "name": names.preview}),
    ]


def restore_blue(names: Names, template: dict[str, Any]) -> Action:
    params = {"namespace": names.namespace, "name": names.blue, "template": template}
    return Action("restore_template", params)


def green_gone(cluster: ClusterSnapshot, names: Names) -> bool:
    return cluster.deployment(names.green) is None and cluster.service(names.preview) is None
