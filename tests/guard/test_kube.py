"""The Kubernetes adapter's retries, against the API simulator's fault injection."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from guard import kube as kube_module
from guard.config import KubernetesConfig
from guard.kube import KubeClient, KubeError
from guard.sim.kubeapi import KubeApiSimulator
from guard.sim.kubeapi.paging import KEPT_LISTS
from guard.sim.kubeapi.recording import RequestRecord

NS = "shop"
PAGED = "fleet"
REPLICA_SETS = f"/apis/apps/v1/namespaces/{PAGED}/replicasets"
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


@pytest.fixture(scope="module")
def fleet(sim: KubeApiSimulator) -> list[str]:
    """Five available Deployments in a namespace of their own, each with its ReplicaSet."""
    names = [f"app-{i}" for i in range(5)]
    for name in names:
        deployment = _deployment(name)
        sim.apply({**deployment, "metadata": {**deployment["metadata"], "namespace": PAGED}})
    deadline = time.monotonic() + 10
    while not all(_settled(d) for d in sim.list("apps/v1", "Deployment", PAGED)):
        assert time.monotonic() < deadline, "the Deployments never became available"
        time.sleep(0.02)
    return names


def _settled(deployment: dict[str, Any]) -> bool:
    """Available, and its status will not change again."""
    status = deployment.get("status", {})
    reasons = {c["type"]: c.get("reason") for c in status.get("conditions", [])}
    return (
        status.get("availableReplicas") == 1
        and reasons.get("Progressing") == "NewReplicaSetAvailable"
    )


def _list_requests(sim: KubeApiSimulator, resource: str) -> int:
    return sum(1 for r in sim.requests_log if r.verb == "list" and r.resource == resource)


def test_a_namespace_is_read_a_page_at_a_time_into_the_same_snapshot(
    sim: KubeApiSimulator, kube: KubeClient, fleet: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = kube.read_namespace(PAGED, services=True)
    sim.clear_requests_log()
    monkeypatch.setattr("guard.kube.LIST_PAGE", 2)

    paged = kube.read_namespace(PAGED, services=True)

    assert paged == whole and sorted(paged.deployments) == fleet
    assert all(d.current_replica_set is not None for d in paged.deployments.values())
    assert _list_requests(sim, "deployments") == _list_requests(sim, "replicasets") == 3


def test_a_list_whose_pages_expired_is_read_again_from_the_start(
    sim: KubeApiSimulator, kube: KubeClient, fleet: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = kube.read_namespace(PAGED)
    monkeypatch.setattr("guard.kube.LIST_PAGE", 2)
    request = kube._request
    expired: list[str] = []

    def compacted_after_the_first_page(
        method: str, collection: str, namespace: str, *args: Any, **kwargs: Any
    ) -> Any:
        """Other clients start enough lists that the server forgets this one (once)."""
        token = dict(kwargs.get("query") or []).get("continue")
        if collection == kube_module.REPLICA_SETS and token and not expired:
            for i in range(KEPT_LISTS):
                params: dict[str, str | int] = {"limit": 1, "labelSelector": f"other notin (x{i})"}
                httpx.get(f"{sim.base_url}{REPLICA_SETS}", params=params).raise_for_status()
            expired.append(token)
        return request(method, collection, namespace, *args, **kwargs)

    monkeypatch.setattr(kube, "_request", compacted_after_the_first_page)
    sim.clear_requests_log()

    assert kube.read_namespace(PAGED) == whole
    guards = [
        r.status
        for r in sim.requests_log
        if r.resource == "replicasets" and not r.user_agent.startswith("python-httpx")
    ]
    assert guards == [200, 410, 200, 200, 200]  # first page, its expired continuation, anew


def test_set_images_changes_only_the_named_containers_image(
    sim: KubeApiSimulator, kube: KubeClient
) -> None:
    deployment = _deployment("pair")
    deployment["spec"]["template"]["spec"]["containers"] = [
        {"name": "web", "image": "shop/web:1", "ports": [{"containerPort": 8080}]},
        {"name": "proxy", "image": "shop/proxy:1"},
    ]
    sim.apply(deployment)

    kube.set_images(NS, "pair", {"web": "shop/web:2"}, "r-pair")

    found = sim.get("apps/v1", "Deployment", NS, "pair")
    assert found is not None
    containers = found["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in containers] == [
        ("web", "shop/web:2"),
        ("proxy", "shop/proxy:1"),
    ]
    assert [p["containerPort"] for p in containers[0]["ports"]] == [8080]
