"""The Kubernetes adapter's retries, against the API simulator's fault injection."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from guard.config import KubernetesConfig
from guard.kube import KubeClient, KubeError
from guard.sim.kubeapi import KubeApiSimulator
from guard.sim.kubeapi.recording import RequestRecord

NS = "shop"
DEPLOYMENT_PATH = rf"/namespaces/{NS}/deployments/web$"


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeApiSimulator]:
    simulator = KubeApiSimulator(tick_seconds=0.05, default_ready_delay_seconds=0.05)
    simulator.start()
    simulator.apply(_deployment("web"))
    simulator.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": NS},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
        }
    )
    simulator.apply(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "web", "namespace": NS},
            "spec": {"rules": [{"backendRefs": [{"name": "web", "port": 80}]}]},
        }
    )
    yield simulator
    simulator.stop()


@pytest.fixture
def kube(sim: KubeApiSimulator, tmp_path: Path) -> Iterator[KubeClient]:
    path = tmp_path / "kubeconfig"
    sim.write_kubeconfig(path, namespace=NS)
    config = KubernetesConfig(
        kubeconfig=path, request_timeout_seconds=1, retry_attempts=3,
        retry_initial_backoff_seconds=0.01,
    )  # fmt: skip
    sim.clear_faults()
    sim.clear_requests_log()
    yield KubeClient(config)
    sim.clear_faults()


def _deployment(name: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "web", "image": "shop/web:1"}]},
            },
        },
    }


def _statuses(sim: KubeApiSimulator, method: str, path_end: str) -> list[int]:
    log: list[RequestRecord] = sim.requests_log
    return [r.status for r in log if r.method == method and r.path.endswith(path_end)]


def _image(sim: KubeApiSimulator) -> str:
    found = sim.get("apps/v1", "Deployment", NS, "web")
    assert found is not None
    image: str = found["spec"]["template"]["spec"]["containers"][0]["image"]
    return image


def test_server_errors_are_retried_within_one_call(sim: KubeApiSimulator, kube: KubeClient) -> None:
    sim.inject_fault("PATCH", DEPLOYMENT_PATH, status=500, count=2)
    sim.inject_fault("PATCH", DEPLOYMENT_PATH, status=503, count=1)

    kube.set_images(NS, "web", {"web": "shop/web:2"}, "r1")

    assert _statuses(sim, "PATCH", "/deployments/web") == [500, 500, 503, 200]
    assert _image(sim) == "shop/web:2"


def test_a_conflict_is_retried_against_the_object_as_it_is_now(
    sim: KubeApiSimulator, kube: KubeClient
) -> None:
    sim.inject_fault("PATCH", DEPLOYMENT_PATH, status=409, count=1)

    kube.set_images(NS, "web", {"web": "shop/web:3"}, "r2")

    assert _statuses(sim, "PATCH", "/deployments/web") == [409, 200]
    assert _image(sim) == "shop/web:3"


def test_a_route_update_that_conflicts_reads_the_route_again(
    sim: KubeApiSimulator, kube: KubeClient
) -> None:
    sim.inject_fault("PUT", r"/httproutes/web$", status=409, count=1)

    kube.set_route_weights(NS, "web", "web", {"web": 90, "web-canary": 10})

    route_calls = [
        (r.method, r.status) for r in sim.requests_log if r.path.endswith("/httproutes/web")
    ]
    assert route_calls == [("GET", 200), ("PUT", 409), ("GET", 200), ("PUT", 200)]
    route = sim.get("gateway.networking.k8s.io/v1", "HTTPRoute", NS, "web")
    assert route is not None
    weights = {b["name"]: b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]}
    assert weights == {"web": 90, "web-canary": 10}


def test_a_slow_answer_times_out_and_is_retried(sim: KubeApiSimulator, kube: KubeClient) -> None:
    sim.inject_fault("GET", DEPLOYMENT_PATH, status=0, delay_seconds=3, count=1)

    snapshot = kube.read_deployment(NS, "web")

    assert snapshot is not None and snapshot.name == "web"
    assert kube.calls == 3  # the timed-out read, its retry, the ReplicaSet list


def test_an_api_that_keeps_failing_raises_a_retryable_error_after_bounded_attempts(
    sim: KubeApiSimulator, kube: KubeClient
) -> None:
    sim.inject_fault("PATCH", DEPLOYMENT_PATH, status=500, count=None)

    with pytest.raises(KubeError) as raised:
        kube.set_paused(NS, "web", True)

    assert raised.value.retryable and raised.value.status == 500
    assert _statuses(sim, "PATCH", "/deployments/web") == [500] * 4


def test_a_refusal_is_not_retried(sim: KubeApiSimulator, kube: KubeClient) -> None:
    sim.inject_fault("PATCH", DEPLOYMENT_PATH, status=403, count=None)

    with pytest.raises(KubeError) as raised:
        kube.set_paused(NS, "web", True)

    assert not raised.value.retryable and raised.value.status == 403
    assert _statuses(sim, "PATCH", "/deployments/web") == [403]


def test_creating_what_exists_updates_it_without_retrying_the_create(
    sim: KubeApiSimulator, kube: KubeClient
) -> None:
    template = _deployment("web")["spec"]["template"]
    template["spec"]["containers"][0]["image"] = "shop/web:4"

    kube.apply_deployment(NS, "web", template, {"app": "web"}, 1, "r3")

    assert _statuses(sim, "POST", "/deployments") == [409]
    assert _statuses(sim, "PATCH", "/deployments/web") == [200]
    assert _image(sim) == "shop/web:4"
