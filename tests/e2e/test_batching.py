"""One PromQL query per metric per tick, however many rollouts are analysed at once."""

from __future__ import annotations

import re
import time
from copy import deepcopy
from pathlib import Path

from guard.sim.guard_process import GuardProcess
from guard.sim.stack import SimulatedStack

from .conftest import GOOD, rollout_body

ROLLOUTS = 50


def _gauge(metrics: str, name: str) -> float:
    match = re.search(rf"^{name} ([0-9.e+]+)$", metrics, re.MULTILINE)
    return float(match.group(1)) if match else -1.0


def test_fifty_concurrent_rollouts_share_three_queries_per_tick(
    stack: SimulatedStack, tmp_path: Path
) -> None:
    for index in range(1, ROLLOUTS):
        manifest = deepcopy(stack.deployment_manifest())
        name = f"checkout-{index}"
        manifest["metadata"]["name"] = name
        manifest["spec"]["replicas"] = 1
        for labels in (manifest["spec"]["selector"]["matchLabels"],
                       manifest["spec"]["template"]["metadata"]["labels"]):  # fmt: skip
            labels["app"] = name
        stack.kube.apply(manifest)
    config = stack.write_guard_config(
        tmp_path / "guard.yaml",
        tmp_path / "data",
        interval_seconds=1,
        healthy_intervals_to_promote=1000,
    )
    with GuardProcess(config, tmp_path / "guard.log") as guard, guard.client() as client:
        names = ["checkout"] + [f"checkout-{i}" for i in range(1, ROLLOUTS)]
        for name in names:
            response = client.post("/v1/rollouts", json=rollout_body(GOOD, deployment=name))
            assert response.status_code == 201, response.text
        deadline = time.monotonic() + 90
        metrics = ""
        while time.monotonic() < deadline:
            metrics = client.get("/metrics").text
            # Pre-flight lets rollouts start on different ticks, so their analyses need not all
            # fall in one tick; many together must still cost three queries.
            if _gauge(metrics, "guard_analysed_rollouts_last_tick") >= ROLLOUTS // 5:
                break
            time.sleep(0.2)
        assert _gauge(metrics, "guard_analysed_rollouts_last_tick") >= ROLLOUTS // 5
        assert _gauge(metrics, "guard_prometheus_queries_last_tick") == 3
        states = {r["state"] for r in client.get("/v1/rollouts", params={"limit": 100}).json()}
        assert states <= {"pending", "progressing"}
