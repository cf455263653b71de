"""`EngineProcess.problem`, what `/readyz` reports of the engine: a real engine process, forked
from the test, whose heartbeat the test then sets.

The engine ticks once at start and then every 60 s (the longest tick the config allows), so once
its first tick has finished nothing else writes the heartbeat while the test runs. It has no
rollouts, so that tick calls neither Kubernetes (an unreachable address) nor Prometheus.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from guard.config import load_config
from guard.engine_process import EngineProcess

NOW = 2_000_000_000.0  # `problem` is given the time: nothing here depends on the clock


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[EngineProcess]:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "none", "cluster": {"server": "https://127.0.0.1:9"}}],
                "users": [{"name": "none", "user": {"token": "x"}}],
                "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
                "current-context": "none",
            }
        ),
        encoding="utf-8",
    )
    raw = {
        "store": {"data_dir": str(tmp_path / "data"), "lease_seconds": 180},
        "prometheus": {"url": "http://127.0.0.1:9"},
        "kubernetes": {"kubeconfig": str(kubeconfig)},
        "scheduler": {"tick_seconds": 60},
    }
    path = tmp_path / "guard.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    process = EngineProcess(load_config(path, {}))
    process.start()
    try:
        deadline = time.monotonic() + 30
        while process._heartbeat[1] == 0 and process.exitcode is None:
            assert time.monotonic() < deadline, "the engine's first tick did not finish"
            time.sleep(0.02)
        assert process.exitcode is None, "the engine exited"
        yield process
    finally:
        process.stop()


def test_a_tick_running_longer_than_stale_after_is_reported(engine: EngineProcess) -> None:
    assert engine.stale_after == 600  # ten ticks of 60 s
    engine._heartbeat[0] = NOW - engine.stale_after - 5  # started, and not finished since
    engine._heartbeat[1] = NOW - engine.stale_after - 10

    problem = engine.problem(now=NOW)

    assert problem == "engine: a tick has run for 605 s"


def test_a_tick_still_within_stale_after_is_not_reported(engine: EngineProcess) -> None:
    engine._heartbeat[0] = NOW - engine.stale_after + 5
    engine._heartbeat[1] = NOW - engine.stale_after - 10

    assert engine.problem(now=NOW) is None


def test_a_finished_tick_is_not_reported_however_long_ago(engine: EngineProcess) -> None:
    engine._heartbeat[0] = NOW - 10 * engine.stale_after
    engine._heartbeat[1] = NOW - 10 * engine.stale_after + 1  # finished, nothing since

    assert engine.problem(now=NOW) is None


def test_an_engine_that_has_stopped_is_reported(engine: EngineProcess) -> None:
    assert engine.problem(now=NOW) is None

    assert engine.stop() == 0

    assert engine.problem(now=NOW) == "engine stopped (exit code 0)"


def test_an_engine_before_its_first_tick_finishes_is_not_ready(engine: EngineProcess) -> None:
    """Its first tick registers the replica: a guard taking hand-offs before it, beside another
    replica already ticking, left every rollout to that one."""
    engine._heartbeat[0] = NOW - 1  # the first tick has started
    engine._heartbeat[1] = 0

    assert engine.problem(now=NOW) == "engine starting: no tick has finished yet"
