"""Score the analysis policy on every replay scenario with a known right answer.

Prints false rollbacks, missed faults, wrong promotions and intervals from fault onset to the
rollback decision, as a table and as one JSON line. `python -m bench.backtest_suite [DIR...]`.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guard.backtest import load_scenario, replay
from guard.config import GuardConfig

DEFAULT_DIRS = (Path("tests/scenarios"), Path("../shared/scenarios"))


@dataclass(frozen=True)
class Expected:
    rollback: bool
    promote_ok: bool
    onset_t: float | None
    within_intervals: int | None = None


@dataclass(frozen=True)
class Score:
    name: str
    outcome: str
    expected: Expected
    intervals_to_decision: float | None

    @property
    def false_rollback(self) -> bool:
        return self.outcome == "rolled_back" and not self.expected.rollback

    @property
    def missed_fault(self) -> bool:
        return self.expected.rollback and self.outcome != "rolled_back"

    @property
    def wrong_promotion(self) -> bool:
        return self.outcome == "promoted" and (
            self.expected.rollback or not self.expected.promote_ok
        )

    @property
    def too_slow(self) -> bool:
        limit = self.expected.within_intervals
        return limit is not None and (self.intervals_to_decision or 0) > limit

    @property
    def correct(self) -> bool:
        return not (
            self.false_rollback or self.missed_fault or self.wrong_promotion or self.too_slow
        )


def expected_of(raw: Any) -> Expected:
    """Our scenarios carry an object; the shared examples a sentence."""
    if isinstance(raw, dict):
        return Expected(bool(raw["rollback"]), bool(raw["promote_ok"]), raw.get("onset_t"))
    text = str(raw)
    if text.startswith("rolls back within"):
        return Expected(True, False, 0.0, within_intervals=int(text.split()[3]))
    return Expected(False, text != "never promotes", None)


def score_files(files: Iterable[Path], config: GuardConfig) -> list[Score]:
    scores = []
    for path in files:
        scenario = load_scenario(path, config)
        expected = expected_of(json.loads(path.read_text(encoding="utf-8")).get("expected"))
        result = replay(scenario, config.analysis_for(scenario.service or ""))
        intervals = None
        if result.decided_at is not None and expected.onset_t is not None:
            intervals = (result.decided_at - expected.onset_t) / scenario.interval_seconds + 1
        scores.append(Score(scenario.name, result.outcome, expected, intervals))
    return scores


def summary(scores: list[Score]) -> dict[str, Any]:
    faults = [s for s in scores if s.expected.rollback]
    caught = [s.intervals_to_decision for s in faults if s.intervals_to_decision is not None]
    return {
        "scenarios": len(scores),
        "correct": sum(s.correct for s in scores),
        "false_rollbacks": sum(s.false_rollback for s in scores),
        "missed_faults": sum(s.missed_fault for s in scores),
        "wrong_promotions": sum(s.wrong_promotion for s in scores),
        "faults": len(faults),
        "median_intervals_to_rollback": statistics.median(caught) if caught else None,
        "max_intervals_to_rollback": max(caught) if caught else None,
    }


def scenario_files(dirs: Iterable[Path]) -> list[Path]:
    return sorted(path for folder in dirs if folder.is_dir() for path in folder.glob("*.json"))


def main(argv: list[str]) -> int:
    files = scenario_files([Path(a) for a in argv] or DEFAULT_DIRS)
    scores = score_files(files, GuardConfig())
    for score in scores:
        if not score.correct:
            print(f"WRONG  {score.name}: {score.outcome} (expected {score.expected})")
    figures = summary(scores)
    width = max(len(key) for key in figures)
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    print(json.dumps({"benchmark": "backtest_suite", **figures}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
