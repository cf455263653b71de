"""The project's scenario suite, through `guard backtest`: every verdict as a human would give."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from bench.backtest_suite import expected_of
from guard.cli import app

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


def test_the_scenario_suite_has_no_false_rollback_missed_fault_or_wrong_promotion() -> None:
    files = sorted(SCENARIOS.glob("*.json"))
    assert len(files) >= 50
    result = CliRunner().invoke(app, ["backtest", *map(str, files)])
    assert result.exit_code == 0, result.output
    outcomes = [json.loads(line) for line in result.stdout.splitlines() if '"outcome"' in line]
    assert len(outcomes) == len(files)
    wrong = []
    for path, outcome in zip(files, outcomes, strict=True):
        expected = expected_of(json.loads(path.read_text())["expected"])
        rolled_back = outcome["outcome"] == "rolled_back"
        promoted = outcome["outcome"] == "promoted"
        if rolled_back != expected.rollback or (promoted and not expected.promote_ok):
            wrong.append(f"{path.stem}: {outcome}")
    assert wrong == []
