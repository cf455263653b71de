"""Tokens end to end: a CI token deploys through the CLI, another CI token cannot touch that
rollout, on-call pauses it, CI resumes its own, and the audit log tells the story."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from guard.sim.guard_process import GuardProcess
from guard.sim.stack import SimulatedStack

from .conftest import GOOD

TOKENS = {"ci": ["deploy"], "ci-other": ["deploy"], "oncall": ["operate"]}


@pytest.fixture
def scoped_guard(guard_config: Path, tmp_path: Path) -> Iterator[GuardProcess]:
    with GuardProcess(guard_config, tmp_path / "guard.log", tokens=TOKENS) as process:
        yield process


def cli(guard: GuardProcess, token: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "GUARD_TOKEN"}
    if token is not None:
        env["GUARD_TOKEN"] = guard.tokens[token]
    command = [sys.executable, "-m", "guard", *args, "--server", guard.url]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, env=env)


def test_scoped_tokens_through_the_cli_and_the_audit_log(
    stack: SimulatedStack, scoped_guard: GuardProcess
) -> None:
    guard = scoped_guard
    deploy = ["deploy", "--namespace", "shop", "--deployment", "checkout"]
    deploy += ["--image", f"checkout={GOOD}", "--commit-sha", "9f2c1e7"]

    anonymous = cli(guard, None, *deploy)
    assert anonymous.returncode == 2 and "401" in anonymous.stderr
    assert "--token or GUARD_TOKEN" in anonymous.stderr

    submitted = cli(guard, "ci", *deploy)
    assert submitted.returncode == 0, submitted.stderr
    rollout_id = submitted.stdout.split()[1]

    foreign = cli(guard, "ci-other", "abort", rollout_id, "--reason", "not mine")
    assert foreign.returncode == 2 and f"HTTP 404: no rollout {rollout_id}" in foreign.stderr
    paused = cli(guard, "oncall", "pause", rollout_id, "--actor", "dana", "--reason", "look")
    assert paused.returncode == 0, paused.stderr
    guard.wait_for(rollout_id, states=("paused",), timeout=60)
    resumed = cli(guard, "ci", "resume", rollout_id, "--reason", "looked fine")
    assert resumed.returncode == 0, resumed.stderr

    rollout = guard.wait_for(rollout_id, timeout=180)
    assert rollout["state"] == "promoted", rollout["message"]
    assert rollout["submitted_by"] == "ci"
    assert stack.images() == {"checkout": GOOD}

    with guard.client(guard.tokens["oncall"]) as client:
        entries = client.get("/v1/audit", params={"target": rollout_id}).json()
    story = [(e["actor"], e["action"], e["reason"]) for e in reversed(entries)]
    assert story == [
        ("ci", "submit", None),
        ("oncall", "pause", "look"),
        ("ci", "resume", "looked fine"),
    ]
    assert entries[1]["details"]["on_behalf_of"] == "dana"
    assert entries[-1]["details"]["commit_sha"] == "9f2c1e7"
