"""Replica ratios and HTTPRoute reweighting: the arithmetic behind each canary step."""

from __future__ import annotations

import pytest

from guard.cluster import reweighted_rules
from strategies.canary_plan import replica_split, routed_split, traffic_steps


@pytest.mark.parametrize(
    ("weight", "stable", "canary", "effective"),
    [
        (10, 4, 1, 20.0),  # the smallest canary is one pod
        (25, 4, 1, 20.0),  # 1/5 is closer to 25 % than 2/6
        (50, 4, 4, 50.0),
        (10, 9, 1, 10.0),
        (5, 20, 1, 4.8),
        (90, 1, 9, 90.0),
    ],
)
def test_replica_split_is_the_closest_whole_pod_ratio(
    weight: int, stable: int, canary: int, effective: float
) -> None:
    split = replica_split(weight, stable)
    assert (split.canary_replicas, split.effective_weight) == (canary, effective)
    assert split.stable_replicas == stable


def test_routed_split_is_exact_with_enough_pods_for_the_share() -> None:
    assert routed_split(10, 4).effective_weight == 10.0
    assert routed_split(10, 4).canary_replicas == 1
    assert routed_split(100, 4).canary_replicas == 4


def test_traffic_steps_drop_100_without_a_router_and_keep_pauses() -> None:
    assert traffic_steps([10, "pause", 50, 100], routed=False) == [10, "pause", 50]
    assert traffic_steps([10, 100], routed=True) == [10, 100]


def test_reweighting_adds_sets_and_removes_backends_only_on_the_stable_rule() -> None:
    rules = [
        {"matches": [{"path": {"value": "/"}}], "backendRefs": [{"name": "web", "port": 80}]},
        {"backendRefs": [{"name": "other", "port": 81}]},
    ]
    split = reweighted_rules(rules, "web", {"web": 90, "web-canary": 10})
    assert split[0]["backendRefs"] == [
        {"name": "web", "port": 80, "weight": 90},
        {"name": "web-canary", "port": 80, "weight": 10},
    ]
    assert split[0]["matches"] == rules[0]["matches"]
    assert split[1] == rules[1]
    back = reweighted_rules(split, "web", {"web": 100, "web-canary": 0})
    assert back[0]["backendRefs"] == [{"name": "web", "port": 80, "weight": 100}]
    assert reweighted_rules(back, "web", {"web": 100, "web-canary": 0}) == back
