"""The README's examples work: the config validates, the CD pipelines call real options."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from guard.cli import app
from guard.config import parse_config
from guard.sim.guard_process import free_port

README = Path(__file__).resolve().parents[1] / "README.md"
# What the CI systems put in place of their variables.
SAMPLES = {
    "github.sha": "9f2c1e7aa0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5",
    "github.event.head_commit.timestamp": "2026-11-23T10:00:00+01:00",
    "github.run_id": "8123456789",
    "github.run_attempt": "1",
    "CI_REGISTRY_IMAGE": "registry.gitlab.example/shop",
    "CI_COMMIT_SHA": "9f2c1e7aa0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5",
    "CI_COMMIT_TIMESTAMP": "2026-11-23T10:00:00+01:00",
    "CI_JOB_ID": "4242",
}


def _pipeline_examples() -> dict[str, dict[str, Any]]:
    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
    examples = [yaml.safe_load(b)["deploy"] for b in blocks if "guard deploy" in b]
    return {"github" if "runs-on" in e else "gitlab": e for e in examples}


def _command(job: dict[str, Any]) -> list[str]:
    line = job["steps"][0]["run"] if "steps" in job else job["script"][0]
    line = re.sub(r"\$\{\{ *([\w.]+) *\}\}", lambda m: SAMPLES[m.group(1)], line)
    line = re.sub(r"\$(\w+)", lambda m: SAMPLES[m.group(1)], line)
    return shlex.split(line)


def test_readme_has_a_github_and_a_gitlab_example() -> None:
    examples = _pipeline_examples()

    assert set(examples) == {"github", "gitlab"}
    assert examples["github"]["env"]["GUARD_URL"] == examples["gitlab"]["variables"]["GUARD_URL"]
    assert examples["github"]["env"]["GUARD_TOKEN"] == "${{ secrets.GUARD_TOKEN }}"
    assert "GUARD_TOKEN" in README.read_text(encoding="utf-8").split("GitLab CI:")[1]


@pytest.mark.parametrize("system", ["github", "gitlab"])
def test_pipeline_command_is_a_valid_guard_deploy(system: str) -> None:
    """Options parse and the request validates (bad input would exit 2 before any request);
    the only failure left is that no guard listens on the port."""
    command = _command(_pipeline_examples()[system])
    closed = f"http://127.0.0.1:{free_port()}"

    result = CliRunner().invoke(app, [*command[1:], "--server", closed, "--timeout", "1"])

    assert command[:2] == ["guard", "deploy"] and "--wait" in command
    assert result.exit_code == 1, result.output
    assert "did not answer" in result.output


def test_readme_config_example_is_valid() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
    assert blocks
    config = parse_config(yaml.safe_load(blocks[0]))
    assert config.analysis.tiers.critical.error_rate == 0.05
    assert config.analysis_for("checkout").tiers.high.error_rate == 0.03
