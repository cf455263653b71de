"""Turn one interval's severity into an action, given how long it has lasted.

Kept apart from the analyzers so that a single noisy interval of a lower tier never rolls back
a release on its own, while a critical one does at once.
"""

from __future__ import annotations

from guard.config import AnalysisConfig
from guard.models import Severity, Verdict

from .base import AnalysisResult


def escalate(result: AnalysisResult, consecutive: int, config: AnalysisConfig) -> Verdict:
    """`consecutive` counts intervals in a row, this one included, at this severity or worse."""
    if result.severity is Severity.CRITICAL:
        return Verdict.ROLLBACK
    if result.severity is Severity.HIGH and consecutive >= config.high_consecutive_to_rollback:
        return Verdict.ROLLBACK
    if result.severity is Severity.MEDIUM and consecutive >= config.medium_consecutive_to_rollback:
        return Verdict.ROLLBACK
    return result.verdict
