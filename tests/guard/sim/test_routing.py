"""Weighted traffic: an HTTPRoute splits by backend weight, then each Service over its pods."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from guard.sim.kubeapi import KubeApiSimulator
from guard.sim.routing import route_backends
from guard.sim.workload import Workload

NS = "shop"


def _route(*refs: dict[str, Any]) -> dict[str, Any]:
    return {"spec": {"rules": [{"backendRefs": list(refs)}]}}


def test_weights_are_relative_and_default_to_one() -> None:
    assert route_backends(_route({"name": "a", "weight": 3}, {"name": "b"})) == [
        ("a", 0.75),
        ("b", 0.25),
    ]


def test_a_lone_backend_takes_everything_whatever_its_weight() -> None:
    assert route_backends(_route({"name": "a", "weight": 0})) == [("a", 1.0)]


def test_all_weights_zero_sends_nothing() -> None:
    assert route_backends(_route({"name": "a", "weight": 0}, {"name": "b", "weight": 0})) == []


def _deployment(name: str, track: str, replicas: int) -> dict[str, Any]:
    labels = {"app": "web", "track": track}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "web", "image": f"web:{track}"}]},
            },
        },
    }


def _service(name: str, track: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"selector": {"app": "web", "track": track}, "ports": [{"port": 80}]},
    }


@pytest.fixture
def cluster() -> Iterator[KubeApiSimulator]:
    sim = KubeApiSimulator(tick_seconds=0.02, default_ready_delay_seconds=0.05)
    sim.start()
    sim.apply(_deployment("web", "stable", 3))
    sim.apply(_deployment("web-canary", "canary", 1))
    sim.apply(_service("web", "stable"))
    sim.apply(_service("web-canary", "canary"))
    sim.apply(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "web", "namespace": NS},
            "spec": {
                "rules": [
                    {
                        "backendRefs": [
                            {"name": "web", "port": 80, "weight": 75},
                            {"name": "web-canary", "port": 80, "weight": 25},
                        ]
                    }
                ]
            },
        }
    )
    yield sim
    sim.stop()


def _served_by_image(workload: Workload) -> dict[str, int]:
    images = {p.name: p.image for p in workload.pods()}
    totals: dict[str, int] = {}
    for pod, count in workload.requests_served().items():
        totals[images[pod]] = totals.get(images[pod], 0) + count
    return totals


def _wait_serving(workload: Workload, count: int) -> None:
    deadline = time.monotonic() + 10
    while sum(p.serving for p in workload.pods()) < count:
        assert time.monotonic() < deadline, workload.pods()
        time.sleep(0.05)
        workload._refresh_pods()


def test_route_weights_split_traffic_regardless_of_pod_counts(cluster: KubeApiSimulator) -> None:
    workload = Workload(cluster.base_url, NS, "web", requests_per_second=1000, seed=1, route="web")
    _wait_serving(workload, 4)

    workload.tick(20.0)

    served = _served_by_image(workload)
    assert sum(served.values()) == 20_000
    assert served["web:canary"] / 20_000 == pytest.approx(0.25, abs=0.02)  # 1 pod of 4, 25 %


def test_a_preview_service_gets_its_own_stream(cluster: KubeApiSimulator) -> None:
    workload = Workload(
        cluster.base_url, NS, "web", requests_per_second=900, seed=2,
        preview_service="web-canary", preview_requests_per_second=100,
    )  # fmt: skip
    _wait_serving(workload, 4)

    workload.tick(10.0)

    served = _served_by_image(workload)
    assert sum(served.values()) == 10_000
    assert served["web:canary"] == pytest.approx(1000, abs=100)  # only the preview stream
