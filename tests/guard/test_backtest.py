"""`guard backtest`: the same judgement as the live guard, on recorded metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from guard.cli import app

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "scenarios"
runner = CliRunner()


def scenario(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "format": "deploy-guard/scenario/v1",
        "name": "tiny",
        "service": "checkout",
        "strategy": "canary",
        "interval_seconds": 10,
        "samples": [
            {"t": 0, "track": "baseline", "requests": 9000, "errors": 30},
            {"t": 0, "track": "canary", "requests": 1000, "errors": 100,
             "latency_seconds": {"p99": 0.3}},
        ],
    }  # fmt: skip
    base.update(overrides)
    return base


def run(tmp_path: Path, data: Any, *args: str) -> Any:
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(data))
    return runner.invoke(app, ["backtest", str(path), *args])


def test_json_lines_end_with_the_outcome(tmp_path: Path) -> None:
    result = run(tmp_path, scenario())
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[0]["verdict"] == "rollback"
    assert lines[0]["severity"] == "critical"
    reasons = {r["metric"]: r for r in lines[0]["reasons"]}
    assert reasons["error_rate"]["value"] == pytest.approx(0.1)
    assert reasons["error_rate"]["threshold"] == 0.05
    assert reasons["error_rate"]["sample_count"] == 1000
    assert reasons["error_rate_vs_baseline"]["p_value"] < 0.001
    assert lines[-1] == {"outcome": "rolled_back", "decided_at": 0.0}


def test_table_format_is_for_people(tmp_path: Path) -> None:
    result = run(tmp_path, scenario(), "--format", "table")
    assert result.exit_code == 0
    assert "rollback" in result.stdout
    assert "outcome: rolled_back at t=0" in result.stdout


def test_config_thresholds_change_the_verdict(tmp_path: Path) -> None:
    config = tmp_path / "guard.yaml"
    config.write_text("services:\n  checkout:\n    analysis:\n      tiers:\n"
                      "        critical: {error_rate: 0.5, latency_seconds: 3}\n"
                      "        high: {error_rate: 0.4, latency_seconds: 2}\n"
                      "        medium: {error_rate: 0.3, latency_seconds: 1}\n")  # fmt: skip
    result = run(tmp_path, scenario(), "--config", str(config))
    assert result.exit_code == 0, result.output
    first = json.loads(result.stdout.splitlines()[0])
    assert first["verdict"] != "rollback"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "v0"}, "format: expected 'deploy-guard/scenario/v1'"),
        ({"strategy": "yolo"}, "strategy: expected one of"),
        ({"interval_seconds": 0}, "interval_seconds: expected a positive number"),
        ({"samples": []}, "samples: expected a non-empty list"),
        ({"samples": [{"t": 0, "track": "canary", "requests": -1, "errors": 0}]},
         "samples[0].requests: expected a number >= 0"),
        ({"samples": [{"t": 0, "track": "canary", "requests": 5, "errors": 6}]},
         "samples[0].errors: 6 errors > 5 requests"),
        ({"samples": [{"t": 10, "track": "canary", "requests": 5, "errors": 0},
                      {"t": 0, "track": "canary", "requests": 5, "errors": 0}]},
         "samples[1].t: 0 comes after t=10"),
        ({"samples": [{"t": 0, "track": "green", "requests": 5, "errors": 0}]},
         "samples[0].track: expected 'canary' or 'baseline'"),
        ({"samples": [{"t": 0, "track": "canary", "requests": 5, "errors": 0},
                      {"t": 0, "track": "canary", "requests": 5, "errors": 0}]},
         "samples[1].track: a second 'canary' sample at t=0"),
        ({"samples": [{"t": 0, "track": "canary", "requests": 5, "errors": 0,
                       "latency_buckets": {"0.1": 3, "1": 2, "+Inf": 5}}]},
         "samples[0].latency_buckets.1: counts must not decrease"),
        ({"samples": [{"t": 0, "track": "canary", "requests": 5, "errors": 0,
                       "latency_seconds": {"p42": 1}}]},
         "samples[0].latency_seconds.p42: expected one of"),
    ],
)  # fmt: skip
def test_bad_input_exits_2_naming_the_sample_and_field(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    result = run(tmp_path, scenario(**change))
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1
    assert message in errors[0]
    assert result.stdout == ""


def test_not_json_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    result = runner.invoke(app, ["backtest", str(path)])
    assert result.exit_code == 2
    assert "not JSON" in result.stderr


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/scenarios is not beside the project")
@pytest.mark.parametrize(
    ("name", "outcome"),
    [
        ("critical-errors-0", "rolled_back"),
        ("healthy-0", "promoted"),
        ("healthy-lowtraffic-0", "promoted"),
        ("platform-incident-0", "undecided"),
    ],
)
def test_shared_examples_reach_the_careful_humans_verdict(name: str, outcome: str) -> None:
    result = runner.invoke(app, ["backtest", str(SHARED / f"{name}.json")])
    assert result.exit_code == 0
    assert json.loads(result.stdout.splitlines()[-1])["outcome"] == outcome
