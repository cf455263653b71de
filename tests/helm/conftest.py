"""Render helm/deploy-guard with Helm's own engine (helm-python-sdk) and look at the objects."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

CHART = Path(__file__).resolve().parents[2] / "helm" / "deploy-guard"
RELEASE = "guard"
NAMESPACE = "ops"
FULLNAME = "guard-deploy-guard"

CUSTOM_CONFIG: dict[str, Any] = {
    "prometheus": {"url": "http://prometheus.monitoring:9090", "timeout_seconds": 3},
    "scheduler": {"tick_seconds": 0.5},
    "analysis": {
        "interval_seconds": 15,
        "window_seconds": 60,
        "latency_quantile": 0.95,
        "min_requests": 100,
        "healthy_intervals_to_promote": 5,
        "tiers": {"critical": {"error_rate": 0.1}, "medium": {"latency_seconds": 0.5}},
        "queries": {
            "requests": (
                "sum by ({group_by}) (increase(http_server_requests_total{{selector}}[{window}]))"
            )
        },
    },
    "services": {
        "checkout": {"team": "payments", "analysis": {"tiers": {"high": {"error_rate": 0.03}}}}
    },
}

# Each variant is a set of values a platform team would install with.
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "cluster-wide": {"rbac": {"clusterWide": True}},
    "several-namespaces": {"rbac": {"namespaces": ["shop", "payments"]}},
    "existing-secret": {"secret": {"existingSecret": "guard-credentials"}},
    "secret-env": {"secret": {"env": {"GUARD_PROMETHEUS__URL": "https://guard:s3cret@prom:9090"}}},
    "servicemonitor-and-pdb": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus"}},
        "podDisruptionBudget": {"enabled": True},
    },
    "persistence": {"persistence": {"enabled": True, "storageClassName": "fast", "size": "2Gi"}},
    "custom-config": {"config": CUSTOM_CONFIG, "image": {"tag": "0.1.0-rc1"}},
    "replicas-on-postgresql": {
        "replicaCount": 3,
        "config": {"store": {"url": "postgresql://guard@postgres.db:5432/guard"}},
    },
    "no-rbac-existing-service-account": {
        "rbac": {"create": False},
        "serviceAccount": {"create": False, "name": "platform-guard"},
    },
}


@dataclass(frozen=True)
class Rendered:
    """The objects of one `helm template`, in template order."""

    objects: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [obj for obj in self.objects if obj["kind"] == kind]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.of_kind(kind)
        assert len(found) == 1, f"expected one {kind}, got {len(found)}"
        return found[0]

    @property
    def guard_config(self) -> dict[str, Any]:
        """The guard.yaml the ConfigMap hands to `guard serve --config`."""
        data = self.one("ConfigMap")["data"]["guard.yaml"]
        parsed: dict[str, Any] = yaml.safe_load(data)
        return parsed


def render(values: dict[str, Any] | None = None, *, namespace: str = NAMESPACE) -> Rendered:
    """Render the chart offline as `helm template` does; schema errors raise HelmValuesError."""
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values, name=RELEASE, namespace=namespace, is_install=True)
    objects: list[dict[str, Any]] = []
    for path in sorted(manifests):
        if path.endswith(".txt"):
            continue
        objects += [doc for doc in yaml.safe_load_all(manifests[path]) if doc]
    return Rendered(objects)


def rule_grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """(verb, apiGroup, resource[/subresource]) for every combination a list of rules grants."""
    return {
        (verb, group, resource)
        for rule in rules
        for verb in rule.get("verbs", [])
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
    }
