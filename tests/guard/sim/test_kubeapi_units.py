"""Unit tests for the simulator's pure building blocks (patching, selectors, rollout math)."""

from __future__ import annotations

from typing import Any

import pytest

from guard.sim.kubeapi.errors import ApiError
from guard.sim.kubeapi.patch import json_patch, merge_patch, strategic_merge_patch
from guard.sim.kubeapi.rollout_math import resolve_fenceposts, scaled_value
from guard.sim.kubeapi.selectors import (
    from_label_selector,
    labels_match,
    parse_label_selector,
    render,
)
from guard.sim.kubeapi.util import ALPHANUMS, pod_template_hash


def test_json_patch_rfc6902_operations() -> None:
    doc = {"a": {"b": [1, 2]}, "c": "x"}
    ops = [
        {"op": "add", "path": "/a/b/-", "value": 3},
        {"op": "add", "path": "/a/b/0", "value": 0},
        {"op": "move", "from": "/c", "path": "/d"},
        {"op": "copy", "from": "/a/b", "path": "/e"},
        {"op": "replace", "path": "/a/b/1", "value": 9},
        {"op": "remove", "path": "/e/0"},
        {"op": "test", "path": "/d", "value": "x"},
        {"op": "add", "path": "/f~1g", "value": True},
    ]
    assert json_patch(doc, ops) == {"a": {"b": [0, 9, 2, 3]}, "d": "x", "e": [1, 2, 3], "f/g": True}
    assert doc == {"a": {"b": [1, 2]}, "c": "x"}  # input untouched
    with pytest.raises(ApiError) as err:
        json_patch(doc, [{"op": "remove", "path": "/missing"}])
    assert err.value.code == 422


def test_merge_patch_rfc7386() -> None:
    target: dict[str, Any] = {"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]}
    patch = {"a": "z", "c": {"f": None}, "l": [3]}
    assert merge_patch(target, patch) == {"a": "z", "c": {"d": "e"}, "l": [3]}


def test_strategic_merge_patch_keys_and_directives() -> None:
    pod: dict[str, Any] = {
        "spec": {
            "containers": [
                {"name": "a", "image": "a:1", "ports": [{"containerPort": 80, "name": "http"}]},
                {"name": "b", "image": "b:1", "args": ["x", "y"]},
            ],
            "tolerations": [{"key": "k"}],
        },
        "metadata": {"finalizers": ["one"], "labels": {"x": "1", "y": "2"}},
    }
    patch = {
        "spec": {
            "containers": [
                {"name": "b", "args": ["z"]},
                {
                    "name": "a",
                    "ports": [{"containerPort": 80, "name": "web"}, {"containerPort": 9090}],
                },
                {"name": "c", "image": "c:1"},
            ],
            "tolerations": [{"key": "new"}],
            "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
        },
        "metadata": {"finalizers": ["two"], "labels": {"$patch": "replace", "only": "this"}},
    }
    out = strategic_merge_patch(pod, patch)
    a, b, c = out["spec"]["containers"]
    assert a["image"] == "a:1" and a["ports"] == [
        {"containerPort": 80, "name": "web"},
        {"containerPort": 9090},
    ]
    assert b == {"name": "b", "image": "b:1", "args": ["z"]}  # non-keyed lists are replaced
    assert c == {"name": "c", "image": "c:1"}
    assert out["spec"]["tolerations"] == [{"key": "new"}]
    assert out["metadata"]["finalizers"] == ["one", "two"]
    assert out["metadata"]["labels"] == {"only": "this"}
    retained = strategic_merge_patch(
        {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}},
        {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}},
    )
    assert retained == {"spec": {"strategy": {"type": "Recreate"}}}
    svc = strategic_merge_patch(
        {"spec": {"ports": [{"port": 80, "name": "a"}]}},
        {"spec": {"ports": [{"port": 80, "name": "b"}]}},
    )
    assert svc == {"spec": {"ports": [{"port": 80, "name": "b"}]}}


def test_label_selector_grammar() -> None:
    sel = parse_label_selector("app=web, tier in (a,b),!legacy,env notin (dev),version!=2,track")
    assert labels_match(sel, {"app": "web", "tier": "a", "version": "3", "track": ""})
    assert not labels_match(sel, {"app": "web", "tier": "c", "track": ""})
    assert not labels_match(sel, {"app": "web", "tier": "a", "track": "", "legacy": "1"})
    with pytest.raises(ApiError):
        parse_label_selector("app in web")
    structured = from_label_selector(
        {
            "matchLabels": {"b": "2", "a": "1"},
            "matchExpressions": [{"key": "c", "operator": "Exists"}],
        }
    )
    assert render(structured) == "a=1,b=2,c"


@pytest.mark.parametrize(
    ("surge", "unavailable", "replicas", "expected"),
    [
        ("25%", "25%", 4, (1, 1)),
        ("25%", "25%", 1, (1, 0)),
        ("25%", "25%", 10, (3, 2)),
        (0, 0, 3, (0, 1)),
        (2, "50%", 3, (2, 1)),
    ],
)
def test_fenceposts_round_like_kubernetes(
    surge: Any, unavailable: Any, replicas: int, expected: tuple[int, int]
) -> None:
    d = {
        "spec": {
            "replicas": replicas,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable},
            },
        }
    }
    assert resolve_fenceposts(d) == expected
    assert scaled_value("33%", 10, True) == 4 and scaled_value("33%", 10, False) == 3


def test_pod_template_hash_is_stable_and_safe() -> None:
    template = {
        "metadata": {"labels": {"app": "x"}},
        "spec": {"containers": [{"name": "a", "image": "a:1"}]},
    }
    first = pod_template_hash(template)
    assert first == pod_template_hash({"spec": template["spec"], "metadata": template["metadata"]})
    assert set(first) <= set(ALPHANUMS) and 1 <= len(first) <= 10
    assert pod_template_hash(template, collision_count=1) != first
