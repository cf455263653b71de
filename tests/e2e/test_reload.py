"""Config hot reload in a running guard: file changes and SIGHUP, applied or refused."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml

from guard.sim.guard_process import GuardProcess
from guard.sim.stack import SimulatedStack

from .conftest import GOOD, submit


def _wait(what: str, condition: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise TimeoutError(f"not seen after {timeout}s: {what}")


def _alerts(guard: GuardProcess, kind: str) -> list[dict[str, Any]]:
    with guard.client() as client:
        alerts: list[dict[str, Any]] = client.get("/v1/alerts").json()
    return [a for a in alerts if a["kind"] == kind and a["status"] == "sent"]


def test_a_new_threshold_takes_effect_and_a_bad_file_is_refused(
    stack: SimulatedStack, tmp_path: Path
) -> None:
    config = stack.guard_config(
        tmp_path / "data", interval_seconds=1, healthy_intervals_to_promote=1000
    )
    path = tmp_path / "guard.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    with GuardProcess(path, tmp_path / "guard.log") as guard:
        rollout_id = submit(guard, GOOD)["id"]
        with guard.client() as client:
            _wait(
                "the rollout judged healthy at least twice",
                lambda: len(client.get(f"/v1/rollouts/{rollout_id}").json()["decisions"]) >= 2,
            )

        broken = {**config, "analysis": {**config["analysis"], "tiers": {"critical": {
            "error_rate": 7}}}}  # fmt: skip
        path.write_text(yaml.safe_dump(broken), encoding="utf-8")
        refused = _wait("a config_refused alert", lambda: _alerts(guard, "config_refused"))
        assert refused[0]["rollout_id"] == "" and refused[0]["severity"] == "high"
        assert "analysis.tiers.critical.error_rate" in refused[0]["summary"]
        assert "analysis.tiers.critical.error_rate" in guard.log_path.read_text()

        moved = {**config, "server": {"port": 1}}
        path.write_text(yaml.safe_dump(moved), encoding="utf-8")
        _wait(
            "the port change refused",
            lambda: "server.port: only read when the guard starts" in guard.log_path.read_text(),
        )
        with guard.client() as client:
            assert client.get(f"/v1/rollouts/{rollout_id}").json()["state"] == "progressing"

        lowered = {**config, "analysis": {**config["analysis"], "healthy_intervals_to_promote": 2}}
        path.write_text(yaml.safe_dump(lowered), encoding="utf-8")
        rollout = guard.wait_for(rollout_id, timeout=60)
        assert rollout["state"] == "promoted"
        _wait("a config_reloaded alert", lambda: _alerts(guard, "config_reloaded"))
        assert len(_alerts(guard, "config_refused")) == 2

        guard.hangup()
        _wait(
            "a reload on SIGHUP",
            lambda: (
                "reloaded; takes effect at the next tick: nothing changed"
                in guard.log_path.read_text()
            ),
        )
