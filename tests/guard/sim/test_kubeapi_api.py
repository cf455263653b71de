"""REST semantics of the simulator (errors, patches, subresources, selectors, faults, logs)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client, config

from guard.sim.kubeapi import ApiError, KubeApiSimulator

NS = "api"


@pytest.fixture(scope="module")
def sim() -> Iterator[KubeApiSimulator]:
    s = KubeApiSimulator(tick_seconds=0.02, default_ready_delay_seconds=0.05)
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def api(sim: KubeApiSimulator, tmp_path_factory: pytest.TempPathFactory) -> client.ApiClient:
    path = tmp_path_factory.mktemp("kube") / "config"
    sim.write_kubeconfig(path, namespace=NS)
    return config.new_client_from_config(config_file=str(path))


@pytest.fixture
def apps(api: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api)


@pytest.fixture
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


def deployment(name: str, image: str = "shop/app:1", replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {"name": "app", "image": image, "env": [{"name": "A", "value": "1"}]},
                        {"name": "proxy", "image": "envoy:1"},
                    ]
                },
            },
        },
    }


def status_of(err: pytest.ExceptionInfo[client.ApiException]) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(err.value.body)
    assert body["kind"] == "Status" and body["status"] == "Failure"
    assert body["code"] == err.value.status
    return body


def test_discovery_and_version(api: client.ApiClient) -> None:
    assert client.VersionApi(api).get_code().major == "1"
    assert client.CoreApi(api).get_api_versions().versions == ["v1"]
    groups = {g.name for g in client.ApisApi(api).get_api_versions().groups}
    assert {"apps", "coordination.k8s.io"} <= groups
    names = {r.name for r in client.AppsV1Api(api).get_api_resources().resources}
    assert {"deployments", "deployments/scale", "deployments/status", "replicasets"} <= names
    assert client.CoreV1Api(api).get_api_resources().group_version == "v1"


def test_defaulting_and_metadata(apps: client.AppsV1Api) -> None:
    d = apps.create_namespaced_deployment(NS, deployment("defaults"))
    assert d.spec.strategy.type == "RollingUpdate"
    assert (
        d.spec.strategy.rolling_update.max_surge,
        d.spec.strategy.rolling_update.max_unavailable,
    ) == ("25%", "25%")
    assert (d.spec.revision_history_limit, d.spec.progress_deadline_seconds) == (10, 600)
    ctr = d.spec.template.spec.containers[0]
    assert (ctr.image_pull_policy, ctr.termination_message_path) == (
        "IfNotPresent",
        "/dev/termination-log",
    )
    assert d.spec.template.spec.restart_policy == "Always"
    assert d.metadata.uid and d.metadata.creation_timestamp and d.metadata.generation == 1
    assert int(d.metadata.resource_version) > 0


def test_optimistic_concurrency(apps: client.AppsV1Api) -> None:
    d = apps.create_namespaced_deployment(NS, deployment("occ"))
    with pytest.raises(client.ApiException) as exists:
        apps.create_namespaced_deployment(NS, deployment("occ"))
    assert exists.value.status == 409 and status_of(exists)["reason"] == "AlreadyExists"
    while True:  # the controller writes status concurrently, so retry on conflict
        fresh = apps.read_namespaced_deployment("occ", NS)
        fresh.spec.replicas = 2
        try:
            updated = apps.replace_namespaced_deployment("occ", NS, fresh)
            break
        except client.ApiException as conflict:
            assert conflict.status == 409
    assert updated.metadata.generation == 2
    assert int(updated.metadata.resource_version) > int(d.metadata.resource_version)
    d.spec.replicas = 3  # d still carries the old resourceVersion
    with pytest.raises(client.ApiException) as stale:
        apps.replace_namespaced_deployment("occ", NS, d)
    body = status_of(stale)
    assert stale.value.status == 409 and body["reason"] == "Conflict"
    assert body["details"] == {"name": "occ", "group": "apps", "kind": "deployments"}
    stale_patch = {
        "metadata": {"resourceVersion": d.metadata.resource_version},
        "spec": {"replicas": 4},
    }
    with pytest.raises(client.ApiException) as patched:
        apps.patch_namespaced_deployment("occ", NS, stale_patch)
    assert patched.value.status == 409
    with pytest.raises(client.ApiException) as missing:
        apps.read_namespaced_deployment("nope", NS)
    assert missing.value.status == 404 and status_of(missing)["reason"] == "NotFound"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (
            lambda d: d["spec"]["template"]["spec"]["containers"][0].pop("image"),
            "spec.template.spec.containers[0].image",
        ),
        (lambda d: d["spec"].__setitem__("replicas", "abc"), "spec.replicas"),
        (
            lambda d: d["spec"]["template"]["metadata"].__setitem__("labels", {"app": "other"}),
            "spec.template.metadata.labels",
        ),
        (lambda d: d["metadata"].__setitem__("name", "Bad_Name"), "metadata.name"),
        (lambda d: d["spec"].__setitem__("replicaz", 1), "spec.replicaz"),
    ],
)
def test_invalid_objects_are_rejected_with_422(
    sim: KubeApiSimulator, mutate: Any, field: str
) -> None:
    # Raw HTTP: the generated client already refuses some of these bodies client-side.
    body = deployment("invalid")
    mutate(body)
    url = f"{sim.base_url}/apis/apps/v1/namespaces/{NS}/deployments"
    response = httpx.post(url, json=body)
    status = response.json()
    assert response.status_code == 422 and status["reason"] == "Invalid"
    assert field in status["message"] and status["details"]["causes"][0]["field"] == field


def test_invalid_object_raises_api_exception_in_the_client(apps: client.AppsV1Api) -> None:
    body = deployment("noimage")
    del body["spec"]["template"]["spec"]["containers"][0]["image"]
    with pytest.raises(client.ApiException) as err:
        apps.create_namespaced_deployment(NS, body)
    assert err.value.status == 422 and status_of(err)["reason"] == "Invalid"
    assert "spec.template.spec.containers[0].image: Required value" in status_of(err)["message"]


def test_strategic_merge_patch_merges_lists_by_key(apps: client.AppsV1Api) -> None:
    apps.create_namespaced_deployment(NS, deployment("smp"))
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "app", "image": "shop/app:2", "env": [{"name": "B", "value": "2"}]}
                    ]
                }
            }
        }
    }
    d = apps.patch_namespaced_deployment("smp", NS, patch)
    app, proxy = d.spec.template.spec.containers
    assert (app.image, proxy.image) == ("shop/app:2", "envoy:1")
    assert [(e.name, e.value) for e in app.env] == [("A", "1"), ("B", "2")]
    assert d.metadata.generation == 2
    d = apps.patch_namespaced_deployment(
        "smp",
        NS,
        {"spec": {"template": {"spec": {"containers": [{"name": "proxy", "$patch": "delete"}]}}}},
    )
    assert [c.name for c in d.spec.template.spec.containers] == ["app"]
    d = apps.patch_namespaced_deployment("smp", NS, {"metadata": {"labels": {"team": "x"}}})
    assert d.metadata.generation == 3 and d.metadata.labels == {"app": "smp", "team": "x"}


def test_json_patch_and_merge_patch(apps: client.AppsV1Api) -> None:
    apps.create_namespaced_deployment(NS, deployment("jp"))
    ops = [
        {"op": "test", "path": "/spec/replicas", "value": 1},
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "shop/app:3"},
        {"op": "add", "path": "/metadata/annotations", "value": {"a": "b"}},
        {"op": "remove", "path": "/spec/template/spec/containers/1"},
    ]
    d = apps.patch_namespaced_deployment("jp", NS, ops)  # a list body is sent as JSON patch
    assert [c.image for c in d.spec.template.spec.containers] == ["shop/app:3"]
    assert d.metadata.annotations["a"] == "b"
    with pytest.raises(client.ApiException) as failed:
        apps.patch_namespaced_deployment(
            "jp", NS, [{"op": "test", "path": "/spec/replicas", "value": 7}]
        )
    assert failed.value.status == 422
    merge = {"metadata": {"annotations": {"a": None, "c": "d"}}, "spec": {"replicas": 3}}
    d = apps.patch_namespaced_deployment(
        "jp", NS, merge, _content_type="application/merge-patch+json"
    )
    assert "a" not in d.metadata.annotations and d.metadata.annotations["c"] == "d"
    assert d.spec.replicas == 3
    replace_list = {
        "spec": {"template": {"spec": {"containers": [{"name": "solo", "image": "solo:1"}]}}}
    }
    d = apps.patch_namespaced_deployment(
        "jp", NS, replace_list, _content_type="application/merge-patch+json"
    )
    assert [c.name for c in d.spec.template.spec.containers] == ["solo"]


def test_status_subresource_is_separate_from_spec(apps: client.AppsV1Api) -> None:
    sim_body = deployment("st", replicas=0)
    apps.create_namespaced_deployment(NS, sim_body)

    def replace_status() -> Any:
        # The controller writes status too: re-read and retry on 409, as real clients do.
        for _ in range(20):
            d = apps.read_namespaced_deployment_status("st", NS)
            d.status.conditions = [
                client.V1DeploymentCondition(type="Custom", status="True", reason="Test")
            ]
            d.spec.replicas = 9  # ignored by the status endpoint
            try:
                return apps.replace_namespaced_deployment_status("st", NS, d)
            except client.ApiException as exc:
                if exc.status != 409:
                    raise
        raise AssertionError("status replace kept conflicting")

    generation = apps.read_namespaced_deployment("st", NS).metadata.generation
    d = replace_status()
    assert d.spec.replicas == 0 and d.metadata.generation == generation
    assert any(c.type == "Custom" for c in d.status.conditions)
    d = apps.patch_namespaced_deployment_status("st", NS, {"status": {"collisionCount": 2}})
    assert d.status.collision_count == 2
    d = apps.patch_namespaced_deployment(
        "st", NS, {"status": {"collisionCount": 5}, "spec": {"replicas": 0}}
    )
    assert d.status.collision_count == 2  # spec writes never change status


def test_leases_crud(api: client.ApiClient) -> None:
    leases = client.CoordinationV1Api(api)
    now = datetime.now(UTC)
    body = client.V1Lease(
        metadata=client.V1ObjectMeta(name="guard-leader"),
        spec=client.V1LeaseSpec(
            holder_identity="a", lease_duration_seconds=15, acquire_time=now, renew_time=now
        ),
    )
    lease = leases.create_namespaced_lease(NS, body)
    assert lease.spec.holder_identity == "a" and lease.spec.renew_time.tzinfo is not None
    lease.spec.holder_identity = "b"
    lease = leases.replace_namespaced_lease("guard-leader", NS, lease)
    lease = leases.patch_namespaced_lease("guard-leader", NS, {"spec": {"leaseTransitions": 1}})
    assert (lease.spec.holder_identity, lease.spec.lease_transitions) == ("b", 1)
    assert [x.metadata.name for x in leases.list_namespaced_lease(NS).items] == ["guard-leader"]
    leases.delete_namespaced_lease("guard-leader", NS)
    with pytest.raises(client.ApiException) as gone:
        leases.read_namespaced_lease("guard-leader", NS)
    assert gone.value.status == 404


def test_services_crud(core: client.CoreV1Api) -> None:
    svc = {
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    created = core.create_namespaced_service(NS, svc)
    assert created.spec.type == "ClusterIP" and created.spec.cluster_ip.startswith("10.96.")
    patched = core.patch_namespaced_service(
        "web", NS, {"spec": {"selector": {"app": "web", "track": "canary"}}}
    )
    assert patched.spec.cluster_ip == created.spec.cluster_ip
    assert patched.spec.selector == {"app": "web", "track": "canary"}
    patched.spec.selector = {"app": "web"}
    assert core.replace_namespaced_service("web", NS, patched).spec.selector == {"app": "web"}
    assert core.delete_namespaced_service("web", NS).metadata.name == "web"


def test_label_and_field_selectors(
    sim: KubeApiSimulator, core: client.CoreV1Api, apps: client.AppsV1Api
) -> None:
    for name, labels in (
        ("s-a", {"tier": "web", "env": "prod"}),
        ("s-b", {"tier": "db", "env": "dev"}),
        ("s-c", {"tier": "web"}),
    ):
        sim.apply(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": NS, "labels": labels},
                "spec": {"ports": [{"port": 80}]},
            }
        )

    def names(selector: str | None = None, fields: str | None = None) -> list[str]:
        return [
            s.metadata.name
            for s in core.list_namespaced_service(
                NS, label_selector=selector, field_selector=fields
            ).items
        ]

    assert names("tier=web") == ["s-a", "s-c"]
    assert names("tier==web,env=prod") == ["s-a"]
    assert names("env!=prod") == ["s-b", "s-c"]
    assert names("env in (prod, dev)") == ["s-a", "s-b"]
    assert names("env notin (prod)") == ["s-b", "s-c"]
    assert names("env") == ["s-a", "s-b"]
    assert names("!env") == ["s-c"]
    assert names(fields="metadata.name=s-b") == ["s-b"]
    assert names("tier=web", "metadata.name!=s-a") == ["s-c"]
    listing = core.list_service_for_all_namespaces(label_selector="tier=db")
    assert [s.metadata.name for s in listing.items] == ["s-b"] and listing.metadata.resource_version
    with pytest.raises(client.ApiException) as bad:
        names(fields="spec.bogus=1")
    assert bad.value.status == 400
    assert sim.list("v1", "Service", NS, "tier=web")[0]["kind"] == "Service"


def test_fault_injection_and_request_log(sim: KubeApiSimulator, apps: client.AppsV1Api) -> None:
    sim.apply(deployment("faulty"))
    sim.inject_fault("GET", r"/deployments/faulty$", status=500, count=1)
    with pytest.raises(client.ApiException) as err:
        apps.read_namespaced_deployment("faulty", NS)
    assert err.value.status == 500 and status_of(err)["reason"] == "InternalError"
    assert apps.read_namespaced_deployment("faulty", NS).metadata.name == "faulty"

    sim.inject_fault("PATCH", "faulty", status=409, count=None)
    for _ in range(2):
        with pytest.raises(client.ApiException) as conflict:
            apps.patch_namespaced_deployment("faulty", NS, {"metadata": {"labels": {"x": "y"}}})
        assert status_of(conflict)["reason"] == "Conflict"
    sim.clear_faults()
    apps.patch_namespaced_deployment("faulty", NS, {"metadata": {"labels": {"x": "y"}}})

    sim.inject_fault("*", "faulty", status=0, delay_seconds=0.3)
    started = time.monotonic()
    apps.read_namespaced_deployment_scale("faulty", NS)
    assert time.monotonic() - started >= 0.3

    records = [r for r in sim.requests_log if r.name == "faulty"]
    assert [(r.verb, r.status) for r in records[:2]] == [("get", 500), ("get", 200)]
    scale = records[-1]
    assert (scale.verb, scale.api_group, scale.resource, scale.subresource, scale.namespace) == (
        "get",
        "apps",
        "deployments",
        "scale",
        NS,
    )
    assert {r.verb for r in records} == {"get", "patch"}
    apps.list_deployment_for_all_namespaces()
    last = sim.requests_log[-1]
    assert (last.verb, last.resource, last.namespace, last.name) == (
        "list",
        "deployments",
        None,
        None,
    )


def test_watch_is_refused_with_a_status(sim: KubeApiSimulator) -> None:
    response = httpx.get(f"{sim.base_url}/apis/apps/v1/namespaces/{NS}/deployments?watch=true")
    assert response.status_code == 405 and response.json()["kind"] == "Status"
    assert sim.requests_log[-1].verb == "watch"
    assert httpx.get(f"{sim.base_url}/healthz").text == "ok"


def test_log_records_the_user_agent(sim: KubeApiSimulator, core: client.CoreV1Api) -> None:
    core.list_namespaced_pod(NS)
    official = sim.requests_log[-1]
    httpx.get(f"{sim.base_url}/api/v1/namespaces/{NS}/pods")
    plain = sim.requests_log[-1]

    assert (official.verb, official.resource) == ("list", "pods")
    assert official.user_agent.startswith("OpenAPI-Generator/")
    assert plain.user_agent.startswith("python-httpx/")


def test_patch_latency_is_a_few_milliseconds(apps: client.AppsV1Api) -> None:
    apps.create_namespaced_deployment(NS, deployment("fast"))
    timings = []
    for i in range(30):
        started = time.perf_counter()
        apps.patch_namespaced_deployment("fast", NS, {"metadata": {"annotations": {"n": str(i)}}})
        timings.append(time.perf_counter() - started)
    assert sorted(timings)[len(timings) // 2] < 0.02


def test_python_api_apply_get_list(sim: KubeApiSimulator) -> None:
    created = sim.apply(deployment("seeded"))
    assert (
        created["metadata"]["generation"] == 1
        and created["spec"]["strategy"]["type"] == "RollingUpdate"
    )
    again = sim.apply({**deployment("seeded", "shop/app:9"), "metadata": {**created["metadata"]}})
    assert again["metadata"]["generation"] == 2
    got = sim.get("apps/v1", "Deployment", NS, "seeded")
    assert (
        got is not None
        and got["spec"]["template"]["spec"]["containers"][0]["image"] == "shop/app:9"
    )
    assert sim.get("apps/v1", "Deployment", NS, "missing") is None
    assert sim.get("v1", "Namespace", "", NS) is not None  # namespaces are created on first use
    with pytest.raises(ApiError) as err:
        sim.apply({**deployment("bad"), "spec": {**deployment("bad")["spec"], "replicas": -1}})
    assert err.value.code == 422


def test_standalone_entry_point(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "config"
    proc = subprocess.Popen(
        [sys.executable, "-m", "guard.sim.kubeapi", "--port", "0", "--kubeconfig", str(kubeconfig)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "serving on http://127.0.0.1:" in line and kubeconfig.exists()
        api = config.new_client_from_config(config_file=str(kubeconfig))
        assert client.CoreV1Api(api).read_namespace("default").status.phase == "Active"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
