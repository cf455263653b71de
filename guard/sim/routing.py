"""Where a simulated request goes: a Service's ready pods, or an HTTPRoute's weighted Services.

This mirrors what kube-proxy and a Gateway API implementation do with the objects the guard
changes: an HTTPRoute splits requests between its backendRefs in proportion to their weights
(a missing weight is 1; a lone backend takes everything), then each Service spreads its share
evenly over its ready pods. A backend Service with no ready pods drops its share, as a gateway
answering 5xx would; those requests never reach a pod, so they never show in pod metrics.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

HTTPROUTES = "/apis/gateway.networking.k8s.io/v1/namespaces/{namespace}/httproutes/{name}"


@dataclass(frozen=True)
class Entry:
    """Requests enter through `name`: an HTTPRoute if `route`, else a Service, at `rps`."""

    name: str
    rps: float
    route: bool = False


def route_backends(route: Mapping[str, Any]) -> list[tuple[str, float]]:
    """(service, fraction of the route's traffic) for the first rule with backends."""
    for rule in (route.get("spec") or {}).get("rules") or []:
        refs = [r for r in rule.get("backendRefs") or [] if r.get("kind", "Service") == "Service"]
        if not refs:
            continue
        if len(refs) == 1:
            return [(refs[0]["name"], 1.0)]
        weights = [float(r.get("weight", 1)) for r in refs]
        total = sum(weights)
        if total == 0:
            return []
        return [(r["name"], w / total) for r, w in zip(refs, weights, strict=True)]
    return []


def service_split(
    client: httpx.Client, kube_url: str, namespace: str, entry: Entry
) -> list[tuple[str, float]]:
    """(service, requests per second) for one entry point; a missing entry point gets none."""
    if not entry.route:
        return [(entry.name, entry.rps)]
    url = kube_url + HTTPROUTES.format(namespace=namespace, name=entry.name)
    response = client.get(url)
    if response.status_code == 404:
        return []
    response.raise_for_status()
    return [(svc, entry.rps * share) for svc, share in route_backends(response.json())]
