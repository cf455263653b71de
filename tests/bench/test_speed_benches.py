"""The speed benchmarks run end to end in tiny configurations and report what they measured.

Only behaviour is asserted (the JSON line's shape, counts, outcomes), never a time: CI machines
vary and are shared.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(module: str, *args: str, timeout: float = 300) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    ).stdout.splitlines()
    figures: dict[str, Any] = json.loads(out[-1])
    machine = figures["machine"]
    assert machine["cpus"] >= machine["cpus_usable"] >= 1 and len(machine["load_average"]) == 3
    return figures


def test_scale_reports_queries_and_kubernetes_calls_per_tick_for_all_rollouts() -> None:
    figures = run("bench.scale", "--sizes", "3", "--ticks", "2", "--tick-seconds", "1")
    assert figures["benchmark"] == "scale"
    (row,) = figures["results"]
    assert row["rollouts"] == 3 and row["accepted"] == 3 and row["analysed"] == 3
    assert row["states"] == {"progressing": 3}
    assert row["queries_per_tick"] == 3  # one batch, whatever the number of rollouts
    assert row["k8s_calls_per_tick"] == 2  # one namespace: Deployments and ReplicaSets
    assert row["ticks"] >= 2 and row["rss_mb"] > 0 and row["cpu_ms_per_tick"] >= 0


def test_handoff_reports_both_endpoints_at_saturation_and_paced_without_failures() -> None:
    figures = run(
        "bench.handoff", "--generator", "httpx", "--requests", "40", "--concurrency", "4",
        "--rate", "40", "--seconds", "1",
    )  # fmt: skip
    assert figures["benchmark"] == "handoff" and figures["generator"] == "httpx"
    rows = {(row["endpoint"], row["load"]): row for row in figures["results"]}
    post, get = "POST /v1/rollouts", "GET /v1/rollouts/{id}"
    closed, paced = "httpx, 4 connections", "40/s offered"
    assert set(rows) == {(post, closed), (post, paced), (get, closed), (get, paced)}
    for row in rows.values():
        assert row["requests"] == 40 and row["failures"] == 0  # a reused key or Deployment: 409
        assert row["p50_ms"] <= row["p99_ms"]
    for load in (closed, paced):
        assert rows[post, load]["with_refusal_ms"] >= rows[post, load]["server_cpu_ms"] >= 0
    for endpoint in (post, get):  # each request went out no later than it was answered
        assert 0 <= rows[endpoint, paced]["send_lag_p99_ms"] <= rows[endpoint, paced]["p99_ms"]
    for load in (closed, paced):  # a hand-off writes; reading a rollout takes no writer lock
        assert rows[post, load]["lock_api_pct"] > 0
        assert rows[get, load]["lock_api_pct"] == 0
        assert rows[get, load]["lock_engine_pct"] >= 0  # its ticks go on meanwhile


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk: apt-get install wrk")
def test_handoff_with_wrk_gives_each_post_its_own_rollout() -> None:
    figures = run(
        "bench.handoff", "--generator", "wrk", "--seconds", "1", "--concurrency", "4",
        "--rate", "20",
    )  # fmt: skip
    assert figures["generator"] == "wrk"
    for row in figures["results"]:
        assert row["requests"] > 0 and row["failures"] == 0  # a reused key or Deployment: 409
        assert row["p50_ms"] <= row["p99_ms"]


def test_time_to_safety_rolls_a_faulty_release_back_and_times_each_stage() -> None:
    figures = run(
        "bench.time_to_safety", "--scrapes", "1", "--faults", "errors", "--strategies", "canary"
    )
    (row,) = figures["results"]
    assert (row["strategy"], row["fault"], row["outcome"]) == ("canary", "errors", "rolled_back")
    assert 0 <= row["breach_s"] <= row["decision_s"] <= row["verified_s"]
    assert row["traffic_s"] is not None and row["target_s"] == 8
