"""Gateway API HTTPRoutes in the simulator, through the official client's CustomObjectsApi."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from guard.sim.kubeapi import KubeApiSimulator

NS = "routes"
GROUP, VERSION, PLURAL = "gateway.networking.k8s.io", "v1", "httproutes"


@pytest.fixture(scope="module")
def custom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[client.CustomObjectsApi]:
    sim = KubeApiSimulator(tick_seconds=0.05)
    sim.start()
    path = tmp_path_factory.mktemp("kube") / "config"
    sim.write_kubeconfig(path, namespace=NS)
    yield client.CustomObjectsApi(config.new_client_from_config(config_file=str(path)))
    sim.stop()


def route(name: str, **backend: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "HTTPRoute",
        "metadata": {"name": name},
        "spec": {
            "parentRefs": [{"name": "gateway"}],
            "rules": [{"backendRefs": [{"name": "web", "port": 80, **backend}]}],
        },
    }


def create(api: client.CustomObjectsApi, body: dict[str, Any]) -> dict[str, Any]:
    created: dict[str, Any] = api.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, body)
    return created


def test_crud_and_merge_patch(custom: client.CustomObjectsApi) -> None:
    created = create(custom, route("crud"))
    assert created["metadata"]["generation"] == 1

    refs = [{"name": "web", "port": 80, "weight": 90}, {"name": "web-v2", "port": 80, "weight": 10}]
    patched = custom.patch_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, "crud", {"spec": {"rules": [{"backendRefs": refs}]}}
    )
    assert patched["spec"]["rules"][0]["backendRefs"] == refs
    assert patched["metadata"]["generation"] == 2

    got = custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "crud")
    got["spec"]["rules"][0]["backendRefs"][1]["weight"] = 0
    replaced = custom.replace_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "crud", got)
    assert replaced["spec"]["rules"][0]["backendRefs"][1]["weight"] == 0

    listed = custom.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL)
    assert "crud" in [item["metadata"]["name"] for item in listed["items"]]
    custom.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "crud")
    with pytest.raises(ApiException) as gone:
        custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "crud")
    assert gone.value.status == 404


def test_a_stale_replace_is_a_conflict(custom: client.CustomObjectsApi) -> None:
    stale = create(custom, route("stale"))
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, "stale", {"metadata": {"labels": {"x": "y"}}}
    )
    with pytest.raises(ApiException) as conflict:
        custom.replace_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "stale", stale)
    assert conflict.value.status == 409


@pytest.mark.parametrize(
    ("backend", "field"),
    [
        ({"weight": 1_000_001}, "spec.rules[0].backendRefs[0].weight"),
        ({"weight": -1}, "spec.rules[0].backendRefs[0].weight"),
        ({"port": None}, "spec.rules[0].backendRefs[0].port"),
        ({"colour": "blue"}, "spec.rules[0].backendRefs[0].colour"),
    ],
)
def test_invalid_shapes_are_rejected_with_the_field(
    custom: client.CustomObjectsApi, backend: dict[str, Any], field: str
) -> None:
    body = route("bad", **backend)
    if backend.get("port", 80) is None:
        del body["spec"]["rules"][0]["backendRefs"][0]["port"]
    with pytest.raises(ApiException) as invalid:
        create(custom, body)
    assert invalid.value.status == 422
    assert field in (invalid.value.body or "")


def test_strategic_merge_patch_is_unsupported_for_a_custom_resource(
    custom: client.CustomObjectsApi,
) -> None:
    create(custom, route("smp"))
    host = custom.api_client.configuration.host
    response = httpx.patch(
        f"{host}/apis/{GROUP}/{VERSION}/namespaces/{NS}/{PLURAL}/smp",
        headers={"Content-Type": "application/strategic-merge-patch+json"},
        json={"spec": {"hostnames": ["a.example"]}},
    )
    assert response.status_code == 415
    assert response.json()["reason"] == "UnsupportedMediaType"
