"""The chart's Role grants exactly what the guard calls: measured, not guessed.

For every registered strategy the guard runs real rollouts (a good release, a bad one, an abort)
against the Kubernetes API simulator, which logs every request as RBAC attributes. The guard's
own requests (the official client's User-Agent) are compared with the rendered Role both ways:
nothing the guard used may be missing, and nothing it never used may be granted.
"""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from guard.sim.guard_process import GuardProcess
from guard.sim.kubeapi import RequestRecord
from guard.sim.stack import SimulatedStack, StackSettings
from guard.sim.workload import TrafficProfile
from strategies.registry import STRATEGIES

from .conftest import render, rule_grants

GUARD_USER_AGENT = "OpenAPI-Generator/"  # the official Kubernetes client; the workload is httpx
WATCHED = "shop"
BEFORE = "registry/checkout:1.4.1"
GOOD = "registry/checkout:1.4.2"
BAD = "registry/checkout:1.4.3"
ABORTED = "registry/checkout:1.4.4"
HEALTHY = TrafficProfile(error_rate=0.002, latency_p50_seconds=0.07, latency_p99_seconds=0.25)
PROFILES = {
    GOOD: HEALTHY,
    ABORTED: HEALTHY,
    BAD: TrafficProfile(error_rate=0.08, latency_p50_seconds=0.08, latency_p99_seconds=0.3),
}
Permission = tuple[str, str, str]  # (verb, apiGroup, resource[/subresource])


def _submit(guard: GuardProcess, strategy: str, image: str) -> str:
    body = {
        "namespace": WATCHED,
        "deployment": "checkout",
        "images": {"checkout": image},
        "strategy": strategy,
    }
    with guard.client() as client:
        response = client.post("/v1/rollouts", json=body)
    assert response.status_code == 201, response.text
    rollout_id: str = response.json()["id"]
    return rollout_id


def _abort(guard: GuardProcess, rollout_id: str) -> None:
    with guard.client() as client:
        response: httpx.Response = client.post(f"/v1/rollouts/{rollout_id}/abort")
    assert response.status_code == 200, response.text


def _run_rollouts(strategy: str, workdir: Path) -> list[RequestRecord]:
    """A good release, a bad release and an aborted one; the guard's requests to the API."""
    settings = StackSettings(namespace=WATCHED, image=BEFORE, profiles=dict(PROFILES))
    with SimulatedStack(settings, workdir / "stack") as stack:
        config = stack.write_guard_config(
            workdir / "guard.yaml", workdir / "data", interval_seconds=1
        )
        with GuardProcess(config, workdir / "guard.log") as guard:
            outcomes = {}
            good = _submit(guard, strategy, GOOD)
            outcomes["good"] = guard.wait_for(good)["state"]
            bad = _submit(guard, strategy, BAD)
            outcomes["bad"] = guard.wait_for(bad)["state"]
            aborted = _submit(guard, strategy, ABORTED)
            guard.wait_for(aborted, states=("progressing",))
            _abort(guard, aborted)
            outcomes["abort"] = guard.wait_for(aborted)["state"]
            with guard.client() as client:  # `guard revisions` reads the Deployment alone
                listed = client.get(
                    "/v1/services/checkout/revisions", params={"namespace": WATCHED}
                )
            assert listed.status_code == 200, listed.text
            log = guard.log_tail()
        assert outcomes == {"good": "promoted", "bad": "rolled_back", "abort": "aborted"}, log
        return [r for r in stack.kube.requests_log if r.user_agent.startswith(GUARD_USER_AGENT)]


def _permission(record: RequestRecord) -> Permission:
    if not record.resource:
        return (record.verb, "nonResourceURL", record.path)
    resource = f"{record.resource}/{record.subresource}" if record.subresource else record.resource
    return (record.verb, record.api_group, resource)


def _describe(permission: Permission, users: dict[Permission, set[str]] | None = None) -> str:
    verb, group, resource = permission
    group = group or "''"  # the core group
    where = f" (used by strategy {', '.join(sorted(users[permission]))})" if users else ""
    return f"verb={verb} apiGroup={group} resource={resource}{where}"


@pytest.mark.timeout(180 * len(STRATEGIES))
def test_role_grants_exactly_what_the_guard_calls(tmp_path: Path) -> None:
    used_by: dict[Permission, set[str]] = defaultdict(set)
    namespaces: set[str | None] = set()
    strategies = sorted(STRATEGIES)
    with ThreadPoolExecutor(max_workers=len(strategies)) as pool:  # separate stacks: mostly waits
        runs = pool.map(lambda strategy: _run_rollouts(strategy, tmp_path / strategy), strategies)
        recorded = dict(zip(strategies, runs, strict=True))
    for strategy, records in recorded.items():
        for record in records:
            used_by[_permission(record)].add(strategy)
            namespaces.add(record.namespace)
    [role] = render({"rbac": {"namespaces": [WATCHED]}}).of_kind("Role")
    granted = rule_grants(role["rules"])

    missing = sorted(set(used_by) - granted)
    extra = sorted(granted - set(used_by))
    problems = [f"missing from the Role: {_describe(p, used_by)}" for p in missing]
    problems += [f"granted but never used by the guard: {_describe(p)}" for p in extra]
    assert problems == [], "\n".join(problems)
    # A namespaced Role only covers requests inside a watched namespace.
    assert namespaces == {WATCHED}, f"guard requests outside {WATCHED}: {namespaces}"


def test_permission_names_subresources_and_non_resource_urls() -> None:
    def record(**fields: Any) -> RequestRecord:
        base: dict[str, Any] = {
            "method": "GET",
            "path": "/apis/apps/v1/namespaces/shop/deployments/checkout",
            "verb": "get",
            "api_group": "apps",
            "resource": "deployments",
            "subresource": None,
            "namespace": "shop",
            "name": "checkout",
            "status": 200,
        }
        return RequestRecord(**{**base, **fields})

    assert _permission(record()) == ("get", "apps", "deployments")
    assert _permission(record(subresource="scale")) == ("get", "apps", "deployments/scale")
    assert _permission(record(path="/version", resource="", api_group="")) == (
        "get",
        "nonResourceURL",
        "/version",
    )
