"""escalate: critical rolls back at once, lower tiers only when they last."""

from __future__ import annotations

import pytest

from analyzers.base import AnalysisResult
from analyzers.policy import escalate
from guard.config import AnalysisConfig
from guard.models import Severity, Verdict

CONFIG = AnalysisConfig(high_consecutive_to_rollback=2, medium_consecutive_to_rollback=4)


def result(severity: Severity, verdict: Verdict = Verdict.HOLD) -> AnalysisResult:
    return AnalysisResult(verdict=verdict, severity=severity, summary=severity.value)


def test_critical_rolls_back_at_once() -> None:
    assert escalate(result(Severity.CRITICAL, Verdict.ROLLBACK), 1, CONFIG) is Verdict.ROLLBACK


def test_critical_rolls_back_even_if_the_analyzer_only_said_hold() -> None:
    assert escalate(result(Severity.CRITICAL, Verdict.HOLD), 1, CONFIG) is Verdict.ROLLBACK


def test_high_holds_until_the_configured_count_then_rolls_back() -> None:
    assert escalate(result(Severity.HIGH), 1, CONFIG) is Verdict.HOLD
    assert escalate(result(Severity.HIGH), 2, CONFIG) is Verdict.ROLLBACK
    assert escalate(result(Severity.HIGH), 3, CONFIG) is Verdict.ROLLBACK


def test_high_count_comes_from_the_config() -> None:
    patient = AnalysisConfig(high_consecutive_to_rollback=5)
    assert escalate(result(Severity.HIGH), 4, patient) is Verdict.HOLD
    assert escalate(result(Severity.HIGH), 5, patient) is Verdict.ROLLBACK


@pytest.mark.parametrize("consecutive", [1, 2, 3])
def test_medium_holds_below_its_count(consecutive: int) -> None:
    assert escalate(result(Severity.MEDIUM), consecutive, CONFIG) is Verdict.HOLD


def test_medium_rolls_back_at_its_count() -> None:
    assert escalate(result(Severity.MEDIUM), 4, CONFIG) is Verdict.ROLLBACK


@pytest.mark.parametrize("verdict", [Verdict.CONTINUE, Verdict.HOLD, Verdict.INCONCLUSIVE])
def test_no_severity_keeps_the_analyzers_verdict(verdict: Verdict) -> None:
    assert escalate(result(Severity.NONE, verdict), 10, CONFIG) is verdict
