"""The simulated controllers, driven through the real ``kubernetes`` client."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import kubernetes_validate
import pytest
from kubernetes import client, config

from guard.sim.kubeapi import ImageBehaviour, KubeApiSimulator

T = TypeVar("T")
NS = "rollout"


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeApiSimulator]:
    s = KubeApiSimulator(tick_seconds=0.02, default_ready_delay_seconds=0.05)
    s.start()
    yield s
    s.stop()
    assert s.controllers.errors == []


@pytest.fixture(scope="module")
def api(sim: KubeApiSimulator, tmp_path_factory: pytest.TempPathFactory) -> client.ApiClient:
    path: Path = tmp_path_factory.mktemp("kube") / "config"
    sim.write_kubeconfig(path, namespace=NS)
    return config.new_client_from_config(config_file=str(path))


@pytest.fixture
def apps(api: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api)


@pytest.fixture
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


def wait_for(check: Callable[[], T | None], timeout: float = 10.0, every: float = 0.02) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(every)


def deployment(name: str, image: str, replicas: int = 4, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
            **spec,
        },
    }


def complete(apps: client.AppsV1Api, name: str) -> Callable[[], client.V1Deployment | None]:
    """The product's definition of a finished rollout."""

    def check() -> client.V1Deployment | None:
        d = apps.read_namespaced_deployment(name, NS)
        s = d.status
        done = (s.observed_generation or 0) >= d.metadata.generation and (
            s.updated_replicas or 0
        ) == (s.replicas or 0) == (s.available_replicas or 0) == d.spec.replicas
        return d if done else None

    return check


def set_image(apps: client.AppsV1Api, name: str, image: str) -> None:
    body = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}}
    apps.patch_namespaced_deployment(name, NS, body)


def replica_sets(apps: client.AppsV1Api, name: str) -> list[client.V1ReplicaSet]:
    return apps.list_namespaced_replica_set(NS, label_selector=f"app={name}").items


def progressing(d: client.V1Deployment) -> client.V1DeploymentCondition:
    return next(c for c in d.status.conditions if c.type == "Progressing")


def test_create_rolls_out_like_kube_controller_manager(
    apps: client.AppsV1Api, core: client.CoreV1Api
) -> None:
    apps.create_namespaced_deployment(NS, deployment("web", "shop/web:1"))
    d = wait_for(complete(apps, "web"))
    assert d.metadata.annotations["deployment.kubernetes.io/revision"] == "1"
    assert d.status.ready_replicas == 4 and d.status.unavailable_replicas is None
    conds = {c.type: c for c in d.status.conditions}
    assert (conds["Available"].status, conds["Available"].reason) == (
        "True",
        "MinimumReplicasAvailable",
    )
    assert conds["Progressing"].reason == "NewReplicaSetAvailable"

    (rs,) = replica_sets(apps, "web")
    h = rs.metadata.labels["pod-template-hash"]
    assert rs.metadata.name == f"web-{h}" and set(h) <= set("bcdfghjklmnpqrstvwxz2456789")
    assert rs.spec.selector.match_labels == {"app": "web", "pod-template-hash": h}
    ref = rs.metadata.owner_references[0]
    assert (ref.kind, ref.name, ref.uid, ref.controller) == (
        "Deployment",
        "web",
        d.metadata.uid,
        True,
    )
    assert rs.metadata.annotations["deployment.kubernetes.io/revision"] == "1"
    assert (rs.status.replicas, rs.status.ready_replicas, rs.status.available_replicas) == (4, 4, 4)
    assert rs.status.fully_labeled_replicas == 4 and rs.status.observed_generation == 1

    pods = core.list_namespaced_pod(NS, label_selector="app=web").items
    assert len(pods) == 4
    for pod in pods:
        assert (
            pod.metadata.name.startswith(f"web-{h}-")
            and len(pod.metadata.name) == len(f"web-{h}-") + 5
        )
        assert pod.metadata.labels == {"app": "web", "pod-template-hash": h}
        assert pod.metadata.owner_references[0].name == rs.metadata.name
        assert pod.status.phase == "Running" and pod.status.pod_ip
        conditions = {c.type: c.status for c in pod.status.conditions}
        assert (
            conditions["Ready"]
            == conditions["ContainersReady"]
            == conditions["PodScheduled"]
            == "True"
        )
        (cs,) = pod.status.container_statuses
        assert (cs.image, cs.ready, cs.started, cs.restart_count) == ("shop/web:1", True, True, 0)


def test_rolling_update_honours_surge_and_unavailability_then_undo_reuses_old_rs(
    sim: KubeApiSimulator, apps: client.AppsV1Api, core: client.CoreV1Api
) -> None:
    sim.set_image_behaviour("shop/cart:2", ImageBehaviour(ready_delay_seconds=0.15))
    apps.create_namespaced_deployment(NS, deployment("cart", "shop/cart:1"))
    wait_for(complete(apps, "cart"))
    (first,) = replica_sets(apps, "cart")

    set_image(apps, "cart", "shop/cart:2")
    samples: list[tuple[int, int]] = []

    def sampled_complete() -> client.V1Deployment | None:
        pods = core.list_namespaced_pod(NS, label_selector="app=cart").items
        ready = [
            p
            for p in pods
            if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        ]
        samples.append((len(pods), len(ready)))
        return complete(apps, "cart")()

    d = wait_for(sampled_complete)
    assert max(total for total, _ in samples) <= 5  # 4 + 25% surge (rounded up)
    assert min(ready for _, ready in samples) >= 3  # 4 - 25% unavailable (rounded down)
    assert any(total == 5 for total, _ in samples), "the rollout should use its surge"
    assert d.metadata.annotations["deployment.kubernetes.io/revision"] == "2"
    rss = {rs.metadata.name: rs for rs in replica_sets(apps, "cart")}
    assert len(rss) == 2 and rss[first.metadata.name].spec.replicas == 0
    pods = core.list_namespaced_pod(NS, label_selector="app=cart").items
    assert {p.spec.containers[0].image for p in pods} == {"shop/cart:2"}

    set_image(apps, "cart", "shop/cart:1")  # what `kubectl rollout undo` does
    d = wait_for(complete(apps, "cart"))
    assert d.metadata.annotations["deployment.kubernetes.io/revision"] == "3"
    rss = {rs.metadata.name: rs for rs in replica_sets(apps, "cart")}
    assert len(rss) == 2
    reused = rss[first.metadata.name]
    assert reused.metadata.annotations["deployment.kubernetes.io/revision"] == "3"
    assert reused.spec.replicas == 4


def test_broken_image_exceeds_progress_deadline(
    sim: KubeApiSimulator, apps: client.AppsV1Api, core: client.CoreV1Api
) -> None:
    sim.set_image_behaviour("shop/pay:bad", ImageBehaviour(broken=True))
    apps.create_namespaced_deployment(
        NS, deployment("pay", "shop/pay:1", 2, progressDeadlineSeconds=2)
    )
    wait_for(complete(apps, "pay"))
    set_image(apps, "pay", "shop/pay:bad")

    def timed_out() -> client.V1Deployment | None:
        d = apps.read_namespaced_deployment("pay", NS)
        cond = progressing(d)
        return d if cond.status == "False" else None

    d = wait_for(timed_out, timeout=8)
    cond = progressing(d)
    assert cond.reason == "ProgressDeadlineExceeded"
    assert "has timed out progressing" in cond.message
    assert d.status.available_replicas == 2  # maxUnavailable rounds down to 0 of 2
    bad = [
        p
        for p in core.list_namespaced_pod(NS, label_selector="app=pay").items
        if p.spec.containers[0].image == "shop/pay:bad"
    ]
    assert len(bad) == 1  # maxSurge rounds up to 1
    (cs,) = bad[0].status.container_statuses
    assert cs.ready is False and cs.state.waiting.reason == "CrashLoopBackOff"
    assert wait_for(
        lambda: (
            core.read_namespaced_pod(bad[0].metadata.name, NS)
            .status.container_statuses[0]
            .restart_count
            >= 1
        )
    )


def test_recreate_never_mixes_versions(apps: client.AppsV1Api, core: client.CoreV1Api) -> None:
    apps.create_namespaced_deployment(
        NS, deployment("batch", "shop/batch:1", 3, strategy={"type": "Recreate"})
    )
    wait_for(complete(apps, "batch"))
    set_image(apps, "batch", "shop/batch:2")
    mixed: list[set[str]] = []

    def check() -> client.V1Deployment | None:
        pods = core.list_namespaced_pod(NS, label_selector="app=batch").items
        mixed.append({p.spec.containers[0].image for p in pods})
        return complete(apps, "batch")()

    wait_for(check)
    assert all(len(images) <= 1 for images in mixed)


def test_pause_blocks_rollout_until_resumed(apps: client.AppsV1Api) -> None:
    apps.create_namespaced_deployment(NS, deployment("cron", "shop/cron:1", 2))
    wait_for(complete(apps, "cron"))
    apps.patch_namespaced_deployment("cron", NS, {"spec": {"paused": True}})
    set_image(apps, "cron", "shop/cron:2")
    d = wait_for(
        lambda: (
            (d := apps.read_namespaced_deployment("cron", NS))
            and progressing(d).reason == "DeploymentPaused"
            and d.status.observed_generation == d.metadata.generation
            and d
        )
    )
    assert progressing(d).status == "Unknown"
    assert d.status.observed_generation == d.metadata.generation
    assert len(replica_sets(apps, "cron")) == 1
    apps.patch_namespaced_deployment("cron", NS, {"spec": {"paused": False}})
    d = wait_for(complete(apps, "cron"))
    assert (
        len(replica_sets(apps, "cron")) == 2 and progressing(d).reason == "NewReplicaSetAvailable"
    )


def test_scale_subresource_and_scaling_events(
    apps: client.AppsV1Api, core: client.CoreV1Api
) -> None:
    apps.create_namespaced_deployment(NS, deployment("api", "shop/api:1", 2))
    wait_for(complete(apps, "api"))
    scale = apps.read_namespaced_deployment_scale("api", NS)
    assert (scale.spec.replicas, scale.status.replicas, scale.status.selector) == (2, 2, "app=api")
    scale = apps.patch_namespaced_deployment_scale("api", NS, {"spec": {"replicas": 5}})
    assert scale.spec.replicas == 5
    d = wait_for(complete(apps, "api"))
    assert (
        d.metadata.generation == 2
        and len(core.list_namespaced_pod(NS, label_selector="app=api").items) == 5
    )
    scale.spec.replicas = 1
    with pytest.raises(client.ApiException) as stale:  # the controller wrote status meanwhile
        apps.replace_namespaced_deployment_scale("api", NS, scale)
    assert stale.value.status == 409
    scale = apps.read_namespaced_deployment_scale("api", NS)
    scale.spec.replicas = 1
    apps.replace_namespaced_deployment_scale("api", NS, scale)
    wait_for(complete(apps, "api"))
    wait_for(lambda: len(core.list_namespaced_pod(NS, label_selector="app=api").items) == 1)
    (rs,) = replica_sets(apps, "api")
    assert rs.metadata.annotations["deployment.kubernetes.io/desired-replicas"] == "1"
    rs_scale = apps.read_namespaced_replica_set_scale(rs.metadata.name, NS)
    assert rs_scale.spec.replicas == 1


def test_revision_history_limit_prunes_old_replica_sets(apps: client.AppsV1Api) -> None:
    apps.create_namespaced_deployment(
        NS, deployment("hist", "shop/hist:1", 1, revisionHistoryLimit=1)
    )
    for version in (2, 3, 4):
        wait_for(complete(apps, "hist"))
        set_image(apps, "hist", f"shop/hist:{version}")
    wait_for(complete(apps, "hist"))
    rss = wait_for(lambda: len(r := replica_sets(apps, "hist")) == 2 and r)
    assert sorted(rs.metadata.annotations["deployment.kubernetes.io/revision"] for rs in rss) == [
        "3",
        "4",
    ]


def test_delete_cascades_to_replica_sets_and_pods(
    apps: client.AppsV1Api, core: client.CoreV1Api
) -> None:
    apps.create_namespaced_deployment(NS, deployment("tmp", "shop/tmp:1", 2))
    wait_for(complete(apps, "tmp"))
    status = apps.delete_namespaced_deployment("tmp", NS)
    assert status["status"] == "Success"
    wait_for(
        lambda: (
            not replica_sets(apps, "tmp")
            and not core.list_namespaced_pod(NS, label_selector="app=tmp").items
        )
    )


def test_everything_the_controllers_write_matches_the_official_schema(
    sim: KubeApiSimulator, apps: client.AppsV1Api
) -> None:
    apps.create_namespaced_deployment(NS, deployment("schema", "shop/schema:1", 2))
    wait_for(complete(apps, "schema"))
    version = kubernetes_validate.latest_version()
    for api_version, kind in (
        ("apps/v1", "Deployment"),
        ("apps/v1", "ReplicaSet"),
        ("v1", "Pod"),
        ("v1", "Namespace"),
    ):
        for obj in sim.list(api_version, kind):
            kubernetes_validate.validate(obj, desired_version=version, strict=True)
