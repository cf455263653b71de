"""`guard backtest --from-prometheus` replays a real Prometheus window through the policy."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from guard.sim.stack import SimulatedStack, StackSettings

from .conftest import BAD, GOOD, PROFILES


def _replay(stack: SimulatedStack, config: Path, revision: str, since: datetime) -> list[dict]:
    command = [
        sys.executable, "-m", "guard", "backtest", "--from-prometheus", stack.prometheus_url,
        "--service", "checkout", "--namespace", "shop", "--candidate", revision,
        "--start", since.isoformat(), "--end", datetime.now(UTC).isoformat(),
        "--config", str(config),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.mark.parametrize(("image", "outcome"), [(BAD, "rolled_back"), (GOOD, "promoted")])
def test_a_past_window_is_judged_like_the_live_guard(
    tmp_path: Path, image: str, outcome: str
) -> None:
    settings = StackSettings(image=image, profiles=dict(PROFILES))
    config = tmp_path / "guard.yaml"
    config.write_text("analysis:\n  interval_seconds: 2\n  healthy_intervals_to_promote: 3\n")
    with SimulatedStack(settings, tmp_path / "stack") as stack:
        revision = stack.kube.list("apps/v1", "ReplicaSet", "shop")[0]["metadata"]["labels"][
            "pod-template-hash"
        ]
        since = datetime.now(UTC) - timedelta(seconds=30)
        deadline = time.monotonic() + 60
        lines: list[dict] = []
        while time.monotonic() < deadline:
            lines = _replay(stack, config, revision, since)
            if lines[-1]["outcome"] != "undecided":
                break
            time.sleep(1)
    assert lines[-1]["outcome"] == outcome, lines
    judged = [line for line in lines[:-1] if line["verdict"] in ("rollback", "promote")]
    assert judged and judged[-1]["reasons"][0]["query"].startswith("sum by (namespace, pod_temp")
