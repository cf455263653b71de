"""A whole simulated environment: Kubernetes API simulator, workload, real Prometheus.

Used by `guard demo` and by the end-to-end tests, so both exercise the same set-up: a Deployment
behind a Service, pods that serve traffic according to their image's profile, and a real
Prometheus that scrapes them every `scrape_interval_seconds`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from guard.sim.kubeapi import ImageBehaviour, KubeApiSimulator
from guard.sim.prometheus import PrometheusServer
from guard.sim.workload import TrafficProfile, Workload


@dataclass
class StackSettings:
    namespace: str = "shop"
    deployment: str = "checkout"
    container: str = "checkout"
    image: str = "registry/checkout:1.4.1"
    replicas: int = 4
    requests_per_second: float = 200.0
    scrape_interval_seconds: float = 1.0
    ready_delay_seconds: float = 0.5
    max_surge: int | str = 1
    max_unavailable: int | str = 0
    progress_deadline_seconds: int = 600
    preview_requests_per_second: float = 50.0  # test traffic to '<deployment>-preview'
    route: bool = False  # production traffic enters through an HTTPRoute named like the Service
    profiles: dict[str, TrafficProfile] = field(default_factory=dict)
    # More Deployments like the first, each behind its own Service with its own traffic (so
    # several rollouts can run and be judged at once), named e.g. "checkout-1".
    extra_deployments: tuple[str, ...] = ()


class SimulatedStack:
    """Start, seed and stop the simulated cluster, workload and Prometheus together."""

    def __init__(self, settings: StackSettings, workdir: Path) -> None:
        self.settings = settings
        self.workdir = workdir
        self.kubeconfig = workdir / "kubeconfig"
        self.kube = KubeApiSimulator(default_ready_delay_seconds=settings.ready_delay_seconds)
        self.workload: Workload | None = None
        self.extra_workloads: list[Workload] = []
        self.prometheus: PrometheusServer | None = None

    def start(self, timeout: float = 60.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        kube_url = self.kube.start()
        self.kube.write_kubeconfig(self.kubeconfig, namespace=self.settings.namespace)
        self.kube.apply(self.service_manifest())
        self.kube.apply(self.deployment_manifest())
        s = self.settings
        if s.route:
            self.kube.apply(self.route_manifest())
        self.workload = Workload(
            kube_url=kube_url,
            namespace=s.namespace,
            service=s.deployment,
            requests_per_second=s.requests_per_second,
            route=s.deployment if s.route else None,
            preview_service=f"{s.deployment}-preview",
            preview_requests_per_second=s.preview_requests_per_second,
        )
        for name in s.extra_deployments:
            self.kube.apply(self.service_manifest(name))
            self.kube.apply(self.deployment_manifest(name))
            self.extra_workloads.append(
                Workload(kube_url, s.namespace, name, requests_per_second=s.requests_per_second)
            )
        targets = []
        for workload in (self.workload, *self.extra_workloads):
            for image, profile in s.profiles.items():
                workload.set_profile(image, profile)
            targets.append(workload.start())
        self.prometheus = PrometheusServer(
            scrape_targets=targets,
            scrape_interval_seconds=s.scrape_interval_seconds,
            data_dir=self.workdir / "prometheus",
        )
        self.prometheus.start()
        for name in (s.deployment, *s.extra_deployments):
            self.wait_complete(timeout, name)
        window = max(5.0, 3 * s.scrape_interval_seconds)  # a rate needs two samples in it
        self.prometheus.wait_for_series(
            f'sum(rate(http_requests_total{{namespace="{s.namespace}"}}[{window:g}s])) > 0',
            timeout=timeout,
        )

    @property
    def prometheus_url(self) -> str:
        assert self.prometheus is not None
        return self.prometheus.url

    def set_profile(self, image: str, profile: TrafficProfile) -> None:
        for workload in (self.workload, *self.extra_workloads):
            assert workload is not None
            workload.set_profile(image, profile)

    def set_image_behaviour(self, image: str, behaviour: ImageBehaviour) -> None:
        self.kube.set_image_behaviour(image, behaviour)

    def deployment(self, name: str | None = None) -> dict[str, Any]:
        s = self.settings
        found: dict[str, Any] | None = self.kube.get(
            "apps/v1", "Deployment", s.namespace, name or s.deployment
        )
        assert found is not None
        return found

    def images(self, name: str | None = None) -> dict[str, str]:
        containers = self.deployment(name)["spec"]["template"]["spec"]["containers"]
        return {c["name"]: c["image"] for c in containers}

    def wait_complete(self, timeout: float = 60.0, name: str | None = None) -> None:
        """Until every replica runs the current template and is available."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            d = self.deployment(name)
            status = d.get("status", {})
            want = d["spec"]["replicas"]
            if (
                status.get("observedGeneration", 0) >= d["metadata"]["generation"]
                and status.get("updatedReplicas") == want
                and status.get("availableReplicas") == want
                and status.get("replicas") == want
            ):
                return
            time.sleep(0.1)
        status = self.deployment(name).get("status")
        raise TimeoutError(f"deployment not complete after {timeout}s: {status}")

    def guard_config(self, data_dir: Path, **analysis: Any) -> dict[str, Any]:
        """A guard config that points at this stack's Prometheus and API simulator."""
        return {
            "store": {"data_dir": str(data_dir)},
            "prometheus": {"url": self.prometheus_url, "timeout_seconds": 2},
            "kubernetes": {"kubeconfig": str(self.kubeconfig), "request_timeout_seconds": 5},
            "scheduler": {"tick_seconds": 0.5},
            "analysis": {
                "interval_seconds": 2,
                "window_seconds": max(5, 4 * self.settings.scrape_interval_seconds),
                "healthy_intervals_to_promote": 3,
                **analysis,
            },
        }

    def write_guard_config(self, path: Path, data_dir: Path, **analysis: Any) -> Path:
        path.write_text(yaml.safe_dump(self.guard_config(data_dir, **analysis)), encoding="utf-8")
        return path

    def service_manifest(self, name: str | None = None) -> dict[str, Any]:
        s = self.settings
        name = name or s.deployment
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": s.namespace},
            "spec": {
                "selector": {"app": name},
                "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
            },
        }

    def route_manifest(self) -> dict[str, Any]:
        s = self.settings
        return {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": s.deployment, "namespace": s.namespace},
            "spec": {
                "parentRefs": [{"name": "gateway"}],
                "rules": [{"backendRefs": [{"name": s.deployment, "port": 80}]}],
            },
        }

    def deployment_manifest(self, name: str | None = None) -> dict[str, Any]:
        s = self.settings
        name = name or s.deployment
        labels = {"app": name}
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": s.namespace, "labels": labels},
            "spec": {
                "replicas": s.replicas,
                "progressDeadlineSeconds": s.progress_deadline_seconds,
                "selector": {"matchLabels": labels},
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": s.max_surge, "maxUnavailable": s.max_unavailable},
                },
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": s.container,
                                "image": s.image,
                                "ports": [{"containerPort": 8080, "name": "http"}],
                            }
                        ]
                    },
                },
            },
        }

    def stop(self) -> None:
        if self.prometheus is not None:
            self.prometheus.stop()
        for workload in (self.workload, *self.extra_workloads):
            if workload is not None:
                workload.stop()
        self.kube.stop()

    def __enter__(self) -> SimulatedStack:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
